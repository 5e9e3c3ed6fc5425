"""Errors a first-time user provokes by hand (curl, a script): each is JSON and says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jet_sqla import Bridge
from jet_sqla.auth import Authenticator
from jet_sqla.errors import Unauthorized

from .conftest import AUTH, PROBLEM, TOKEN


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = 'notes'
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(50))


@pytest.fixture
def http(tmp_path: Path) -> testing.TestClient:
    engine = sa.create_engine(f'sqlite:///{tmp_path / "notes.db"}')
    Base.metadata.create_all(engine)
    bridge = Bridge(Base, engine=engine, token=TOKEN)

    with engine.begin() as connection:
        connection.execute(sa.insert(Note), [{'id': 1, 'text': 'one'}, {'id': 2, 'text': 'two'}])

    @bridge.action()
    def ping() -> None: ...

    @bridge.action(model=Note, for_instance=True, bulk=True)
    def ping_notes(notes: list[Note]) -> dict[str, list[int]]:
        return {'ran_on': [note.id for note in notes]}

    return testing.TestClient(bridge.wsgi_app())


@pytest.mark.parametrize('params', [{}, {'model': 'notes', 'ids': [1]}, {'name': None}, {'name': ''}])
def test_execute_action_without_a_name_says_to_name_the_action(http: testing.TestClient,
                                                               params: dict[str, object]) -> None:
    # It used to be a 404 "Unknown action 'None'": an action nobody named.
    body = {'name': 'execute_action', 'params': params}
    problem = http.simulate_post('/api/messages/', json=body, headers={**AUTH, **PROBLEM})
    assert problem.status_code == 400, problem.text
    assert problem.json['code'] == 'missing_name'
    assert '"name"' in problem.json['detail'] and 'get_action_list' in problem.json['detail']
    jet = http.simulate_post('/api/messages/', json=body, headers=AUTH)
    assert jet.status_code == 400 and jet.headers['content-type'].startswith('application/json')
    assert list(jet.json) == ['non_field_errors'] and 'get_action_list' in jet.json['non_field_errors'][0]
    assert 'None' not in jet.text


def test_an_unknown_action_is_still_a_404_naming_it(http: testing.TestClient) -> None:
    result = http.simulate_post('/api/messages/', json={'name': 'execute_action', 'params': {'name': 'pong'}},
                                headers=AUTH)
    assert result.status_code == 404 and "'pong'" in result.json['detail']


@pytest.mark.parametrize(('header', 'says'), [
    ('Basic dXNlcjpwYXNz', "'basic'"),
    ('Digest abc', "'digest'"),
    ('JWT a.b.c', 'no JWT key'),  # a scheme Jet Admin uses, but this server has no key for it
])
def test_an_unsupported_scheme_says_which_to_send(http: testing.TestClient, header: str, says: str) -> None:
    result = http.simulate_post('/api/messages/', json={'name': 'get_action_list'},
                                headers={'Authorization': header})
    assert result.status_code == 401 and result.headers['content-type'].startswith('application/json')
    assert says in result.json['detail'] and 'send "Bearer <token>"' in result.json['detail']
    assert 'JWT <token>' not in result.json['detail']  # not offered: it would be refused too


def test_a_shared_token_on_a_jwt_only_server_says_to_send_a_jwt() -> None:
    # "Invalid token" would send the user hunting for a token this server does not have.
    authenticator = Authenticator(jwt_public_key='-----BEGIN PUBLIC KEY-----', project='shop')
    with pytest.raises(Unauthorized, match=r"scheme 'bearer'; send \"JWT <token>\"$"):
        authenticator.authenticate('Bearer s3cret')
    with pytest.raises(Unauthorized, match='Invalid JWT'):
        authenticator.authenticate('Bearer s3cret, JWT not-a-jwt')


def test_a_wrong_method_says_which_methods_the_path_answers(http: testing.TestClient) -> None:
    result = http.simulate_get('/api/messages/', headers=AUTH)
    assert result.status_code == 405 and result.json['error_code'] == 'method_not_allowed'
    assert result.json['detail'].startswith('Method Not Allowed: GET /api/messages/; this path answers ')
    assert 'POST' in result.json['detail'].rpartition('answers')[2]


def _mounted_bridge(tmp_path: Path) -> Bridge:
    engine = sa.create_engine(f'sqlite:///{tmp_path / "mounted.db"}')
    Base.metadata.create_all(engine)
    return Bridge(Base, engine=engine, token=TOKEN)


def test_errors_under_a_flask_mount_name_the_path_the_client_asked_for(tmp_path: Path) -> None:
    import flask

    app = flask.Flask(__name__)
    _mounted_bridge(tmp_path).mount(app)
    client = app.test_client()
    wrong_method = client.get('/api/messages/', headers=AUTH)
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()['detail'].startswith('Method Not Allowed: GET /api/messages/;')
    unknown = client.post('/api/nothing-here', headers=AUTH)
    assert unknown.status_code == 404 and unknown.get_json()['detail'] == 'Not Found: POST /api/nothing-here'


def test_errors_under_a_starlette_mount_name_the_path_the_client_asked_for(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    app = Starlette()
    _mounted_bridge(tmp_path).mount(app)
    with TestClient(app) as client:
        wrong_method = client.get('/api/messages/', headers=AUTH)
        assert wrong_method.status_code == 405
        assert wrong_method.json()['detail'].startswith('Method Not Allowed: GET /api/messages/;')
        unknown = client.post('/api/nothing-here', headers=AUTH)
        assert unknown.status_code == 404 and unknown.json()['detail'] == 'Not Found: POST /api/nothing-here'


@pytest.mark.parametrize('where', ['beside', 'inside'])
def test_id_and_ids_that_differ_are_refused_not_half_read(http: testing.TestClient, where: str) -> None:
    # Both used to be accepted, the "id" silently dropped: the action ran on record 2 only.
    selection = {'id': 1, 'ids': [2]}
    params = {'name': 'ping_notes', 'model': 'notes', **selection, 'params': {}} if where == 'beside' else \
        {'name': 'ping_notes', 'model': 'notes', 'params': selection}
    result = http.simulate_post('/api/messages/', json={'name': 'execute_action', 'params': params}, headers=AUTH)
    assert result.status_code == 400, result.text
    assert list(result.json) == ['non_field_errors'] and result.json['non_field_errors'][0].startswith('ids: ')
    agreeing = {'id': 1, 'ids': [1]}
    params = {'name': 'ping_notes', 'model': 'notes', **agreeing, 'params': {}} if where == 'beside' else \
        {'name': 'ping_notes', 'model': 'notes', 'params': agreeing}
    ok = http.simulate_post('/api/messages/', json={'name': 'execute_action', 'params': params}, headers=AUTH)
    assert ok.status_code == 200 and ok.json == {'result': True, 'ran_on': [1]}, ok.text


@pytest.mark.parametrize('given', ['sqlite:///shop.db', sa.make_url('postgresql://app:pw@db/shop'), 42])
def test_engine_given_a_url_says_to_create_the_engine(given: object) -> None:
    # It used to fail inside SQLAlchemy: "No such event 'checkin' for target 'sqlite:///shop.db'".
    with pytest.raises(TypeError, match=r'engine= takes an Engine .*sqlalchemy\.create_engine\(url\)') as raised:
        Bridge(Base, engine=given, token=TOKEN)  # type: ignore[arg-type]
    assert 'pw' not in str(raised.value)  # a URL's password is never echoed


def test_field_options_without_model_or_action_names_both(http: testing.TestClient) -> None:
    result = http.simulate_post('/api/messages/', json={'name': 'get_field_options', 'params': {'field': 'text'}},
                                headers={**AUTH, **PROBLEM})
    assert result.status_code == 400 and result.json['code'] == 'invalid_params'
    assert '"action"' in result.json['fields']['model']
