"""The runnable examples, run the way the README says: a fresh directory, no data of one's own.

A first run must leave something for every action to work on; an empty
library or an empty hero roster would only ever answer "no record with id 1".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from .apps.examples import import_flask_library
from .conftest import AUTH, TOKEN


def test_the_flask_library_starts_stocked_and_its_actions_run(tmp_path: Path) -> None:
    library = import_flask_library()
    config = {'SQLALCHEMY_DATABASE_URI': f'sqlite:///{tmp_path / "library.db"}',
              'SQLALCHEMY_BINDS': {'archive': f'sqlite:///{tmp_path / "archive.db"}'}}
    app = library.create_app(config)
    try:
        client = app.test_client()

        def post(name: str, params: dict[str, Any]) -> Any:
            return client.post('/api/messages/', json={'name': name, 'params': params}, headers=AUTH)

        books = client.get('/books').get_json()
        assert len(books) >= 2, books
        lent = post('execute_action', {'name': 'lend', 'model': 'books', 'ids': [books[0]['id'], books[1]['id']],
                                       'params': {'borrower': 'Ada'}})
        assert lent.status_code == 200, lent.get_data(as_text=True)
        assert lent.get_json()['lent'] == 2
        authors = post('get_field_options', {'action': 'add_book', 'field': 'author'}).get_json()
        assert authors, 'add_book needs an existing author: the example must have some'
        added = post('execute_action', {'name': 'add_book',
                                        'params': {'title': 'Dune', 'author': authors[0]['value']}})
        assert added.status_code == 200, added.get_data(as_text=True)
        # Run again over the same database: the stock is not added twice.
        again = library.create_app(config)
        assert len(again.test_client().get('/books').get_json()) == len(books) + 1
    finally:
        with app.app_context():
            library.db.drop_all()
            for engine in library.db.engines.values():
                engine.dispose()


def test_the_fastapi_heroes_start_stocked_and_their_actions_run(tmp_path: Path) -> None:
    from jet_sqla.examples.fastapi_heroes.app import create_app

    url = f'sqlite:///{tmp_path / "heroes.db"}'
    app = create_app(url, token=TOKEN)
    try:
        with TestClient(app) as client:
            def post(name: str, params: dict[str, Any]) -> Any:
                return client.post('/api/messages/', json={'name': name, 'params': params}, headers=AUTH)

            heroes = client.get('/heroes').json()
            assert heroes, 'retire needs heroes: the example must have some'
            retired = post('execute_action', {'name': 'retire', 'model': 'hero', 'ids': [heroes[0]['id']]})
            assert retired.status_code == 200, retired.text
            teams = post('get_field_options', {'action': 'recruit', 'field': 'team'}).json()
            assert teams, 'recruit needs a team: the example must have some'
            recruited = post('execute_action', {'name': 'recruit', 'params': {
                'name': 'Storm', 'power': 'flight', 'team': teams[0]['value']}})
            assert recruited.status_code == 200, recruited.text
    finally:
        app.state.bridge.engine.dispose()
    again = create_app(url, token=TOKEN)
    try:
        with TestClient(again) as client:
            assert len(client.get('/heroes').json()) == len(heroes) + 1  # stocked once, not twice
    finally:
        again.state.bridge.engine.dispose()
