"""A real Flask-SQLAlchemy app (the library example) with jet_sqla joined by bridge.init_app(app).

On SQLite and PostgreSQL, with a second database bound by ``__bind_key__``:
the bridge is built at import time with no engine, actions run inside the
Flask app context, their session is ``db.session``, writes to both databases
commit or roll back with the action, and enum and foreign-key options work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from .apps.examples import import_flask_library
from .conftest import AUTH, TOKEN, database_url

library = import_flask_library()


class Crate(library.db.Model):  # type: ignore[name-defined,misc]
    """Test-only models on the 'archive' bind: id loading and options must use that database."""

    __bind_key__ = 'archive'
    __tablename__ = 'archive_crates'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))


class Parcel(library.db.Model):  # type: ignore[name-defined,misc]
    __bind_key__ = 'archive'
    __tablename__ = 'archive_parcels'
    id: Mapped[int] = mapped_column(primary_key=True)
    crate_id: Mapped[int] = mapped_column(sa.ForeignKey('archive_crates.id'))
    genre: Mapped[library.Genre] = mapped_column(sa.Enum(library.Genre, name='parcel_genre'))  # type: ignore[name-defined]


@library.bridge.action(model=Parcel, for_instance=True, bulk=True)
def move_parcels(parcels: list[Parcel], crate: Crate) -> dict[str, int]:
    for parcel in parcels:
        parcel.crate_id = crate.id
    return {'moved': len(parcels)}


@library.bridge.action()
def session_is_db_session(session: Session) -> dict[str, Any]:
    """A probe: the session jet_sqla hands out, compared with db.session inside the same run."""
    return {'same': session is library.db.session(), 'app': flask.current_app.name}


@pytest.fixture(params=['sqlite', 'postgresql'])
def app(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[flask.Flask]:
    main_url = database_url(request.param, tmp_path)
    app = library.create_app({
        'SQLALCHEMY_DATABASE_URI': main_url,
        'SQLALCHEMY_BINDS': {'archive': f'sqlite:///{tmp_path / "archive.db"}'},
        'LIBRARY_SEED': False,  # the rows below, with known ids, instead of the example's stock
    })
    with app.app_context():
        # No explicit ids: PostgreSQL's sequences then agree with the rows (ids 1, 2, 3 on fresh tables).
        for row in (library.Author(name='Woolf'), library.Author(name='Borges')):
            library.db.session.add(row)
            library.db.session.flush()
        for title, author_id, extra in (('Orlando', 1, {}), ('Ficciones', 2, {'genre': library.Genre.ESSAY}),
                                        ('The Waves', 1, {'on_loan': True})):
            library.db.session.add(library.Book(title=title, author_id=author_id, **extra))
            library.db.session.flush()
        library.db.session.commit()
    yield app
    with app.app_context():
        library.db.drop_all()
        for engine in library.db.engines.values():
            engine.dispose()


def message(app: flask.Flask, name: str, params: dict[str, Any] | None = None) -> Any:
    response = app.test_client().post('/api/messages/', json={'name': name, 'params': params or {}}, headers=AUTH)
    return response


def rows(app: flask.Flask, statement: Any) -> list[Any]:
    with app.app_context():
        return list(library.db.session.execute(statement).all())


def test_the_apps_own_routes_still_answer(app: flask.Flask) -> None:
    response = app.test_client().get('/books')
    assert response.status_code == 200
    assert {book['title'] for book in response.get_json()} == {'Orlando', 'Ficciones', 'The Waves'}
    assert app.test_client().get('/api/health').status_code == 200


def test_an_action_writes_to_both_databases_in_the_app_context(app: flask.Flask) -> None:
    response = message(app, 'execute_action', {'name': 'lend', 'model': 'books',
                                               'params': {'ids': [1, 2], 'borrower': 'Ada'}})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {'result': True, 'lent': 2, 'library': 'City library'}  # current_app worked
    assert rows(app, sa.select(library.Book.id).where(library.Book.on_loan).order_by(library.Book.id)) == [
        (1,), (2,), (3,)]
    # LoanRecord has __bind_key__ = 'archive': the rows went to the second database.
    assert rows(app, sa.select(library.LoanRecord.book_id, library.LoanRecord.borrower)
                .order_by(library.LoanRecord.book_id)) == [(1, 'Ada'), (2, 'Ada')]
    with app.app_context():
        main_tables = sa.inspect(library.db.engine).get_table_names()
    assert 'loan_records' not in main_tables


def test_a_refused_action_rolls_back_db_session_writes_in_both_databases(app: flask.Flask) -> None:
    # Book 1 is lent (and its LoanRecord added to db.session) before book 3 is found on loan.
    response = message(app, 'execute_action', {'name': 'lend', 'model': 'books',
                                               'params': {'ids': [1, 3], 'borrower': 'Ada'}})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert 'Already on loan: The Waves' in response.get_data(as_text=True)
    assert rows(app, sa.select(library.Book.id).where(library.Book.on_loan)) == [(3,)]
    assert rows(app, sa.select(library.LoanRecord.id)) == []


def test_the_actions_session_is_db_session(app: flask.Flask) -> None:
    response = message(app, 'execute_action', {'name': 'session_is_db_session'})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {'result': True, 'same': True, 'app': app.name}


def test_a_foreign_key_param_and_an_enum_param(app: flask.Flask) -> None:
    response = message(app, 'execute_action', {'name': 'add_book',
                                               'params': {'title': 'Labyrinths', 'author': 2, 'genre': 'essay'}})
    assert response.status_code == 200, response.get_data(as_text=True)
    book_id = response.get_json()['id']
    assert rows(app, sa.select(library.Book.title, library.Book.author_id, library.Book.genre)
                .where(library.Book.id == book_id)) == [('Labyrinths', 2, library.Genre.ESSAY)]
    missing = message(app, 'execute_action', {'name': 'add_book', 'params': {'title': 'X', 'author': 99}})
    assert missing.status_code == 400 and 'author' in missing.get_data(as_text=True)


def test_enum_and_foreign_key_options(app: flask.Flask) -> None:
    genre = message(app, 'get_field_options', {'model': 'books', 'field': 'genre'})
    assert [option['value'] for option in genre.get_json()] == ['NOVEL', 'POETRY', 'ESSAY']
    authors = message(app, 'get_field_options', {'model': 'books', 'field': 'author_id'})
    assert [(option['value'], option['name']) for option in authors.get_json()] == [(1, 'Woolf'), (2, 'Borges')]
    actions = {action['name']: action for action in message(app, 'get_action_list').get_json()}
    genre_param = next(p for p in actions['change_genre']['params'] if p['name'] == 'genre')
    assert genre_param['field'] == 'SelectField'  # a str-mixin Enum is a select, not a CharField
    assert [option['value'] for option in genre_param['params']['options']] == ['novel', 'poetry', 'essay']
    param = message(app, 'get_field_options', {'action': 'add_book', 'field': 'author', 'q': 'bor'})
    assert [option['name'] for option in param.get_json()] == ['Borges']


def test_a_bind_key_model_is_loaded_and_listed_from_its_own_database(app: flask.Flask) -> None:
    with app.app_context():
        library.db.session.add_all([Crate(id=1, name='Red'), Crate(id=2, name='Blue')])
        library.db.session.add(Parcel(id=1, crate_id=1, genre=library.Genre.POETRY))
        library.db.session.commit()
    crates = message(app, 'get_field_options', {'model': 'archive_parcels', 'field': 'crate_id'})
    assert crates.status_code == 200, crates.get_data(as_text=True)
    assert [(o['value'], o['name']) for o in crates.get_json()] == [(1, 'Red'), (2, 'Blue')]
    genres = message(app, 'get_field_options', {'model': 'archive_parcels', 'field': 'genre'})
    assert [o['value'] for o in genres.get_json()] == ['NOVEL', 'POETRY', 'ESSAY']
    moved = message(app, 'execute_action', {'name': 'move_parcels', 'model': 'archive_parcels',
                                            'params': {'ids': [1], 'crate': 2}})
    assert moved.status_code == 200, moved.get_data(as_text=True)
    assert rows(app, sa.select(Parcel.crate_id)) == [(2,)]


def test_bridge_execute_outside_a_request_also_runs_in_the_app_context(app: flask.Flask) -> None:
    assert library.bridge.execute('session_is_db_session') == {'result': True, 'same': True, 'app': app.name}


def test_init_app_before_db_init_app_is_refused_and_leaves_the_app_alone() -> None:
    bare = flask.Flask('bare')
    before = bare.wsgi_app
    bridge = library.Bridge(library.db.Model, token=TOKEN)
    with pytest.raises(RuntimeError, match='db.init_app'):
        bridge.init_app(bare)
    assert bare.wsgi_app == before and 'wsgi_app' not in vars(bare)
