"""A real FastAPI app on SQLModel models (the heroes example), with the bridge mounted on it.

Through httpx over ASGI (Starlette's TestClient), and once through a real
uvicorn server on loopback; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from jet_sqla.examples.fastapi_heroes.app import Hero, Power, Team, create_app
from sqlmodel import Session, SQLModel, select
from starlette.testclient import TestClient

from jet_sqla import Bridge

from .apps.cli_server import free_port
from .conftest import AUTH, TOKEN, database_url


@pytest.fixture(params=['sqlite', 'postgresql'])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    url = database_url(request.param, tmp_path)
    engine = sa.create_engine(url)
    tables = [Team.__table__, Hero.__table__]  # type: ignore[attr-defined]
    SQLModel.metadata.drop_all(engine, tables=tables)
    SQLModel.metadata.create_all(engine, tables=tables)
    with Session(engine) as session:
        session.add(Team(name='Avengers'))
        session.add(Team(name='Defenders'))
        session.commit()
        session.add(Hero(name='Thor', power=Power.STRENGTH, team_id=1))
        session.add(Hero(name='Falcon', power=Power.FLIGHT, team_id=1, retired=True))
        session.commit()
    yield url
    SQLModel.metadata.drop_all(engine, tables=tables)
    engine.dispose()


@pytest.fixture
def app(url: str) -> Iterator[FastAPI]:
    app = create_app(url, token=TOKEN)
    yield app
    app.state.bridge.engine.dispose()


def post(client: TestClient | httpx.Client, name: str, params: dict[str, Any] | None = None) -> httpx.Response:
    return client.post('/api/messages/', json={'name': name, 'params': params or {}}, headers=AUTH)


def heroes(url: str) -> dict[str, tuple[Power, bool, int | None]]:
    engine = sa.create_engine(url)
    try:
        with Session(engine) as session:
            return {hero.name: (hero.power, hero.retired, hero.team_id) for hero in session.exec(select(Hero))}
    finally:
        engine.dispose()


def test_model_takes_the_sqlmodel_classes_themselves(app: FastAPI) -> None:
    bridge = app.state.bridge
    assert bridge.catalog.get(Hero).model is Hero
    assert bridge.collection_name(Hero) == 'hero'
    assert bridge.catalog.get('team').label.name == 'name'  # AutoString counts as text


def test_the_apps_own_route_and_an_action_that_writes(app: FastAPI, url: str) -> None:
    with TestClient(app) as client:
        assert [hero['name'] for hero in client.get('/heroes').json()] == ['Thor', 'Falcon']
        result = post(client, 'execute_action', {'name': 'retire', 'model': 'hero', 'params': {'ids': [1]}})
        assert result.status_code == 200, result.text
        assert result.json() == {'result': True, 'retired': 1}
    assert heroes(url)['Thor'][1] is True


def test_a_refused_bulk_action_rolls_back(app: FastAPI, url: str) -> None:
    with TestClient(app) as client:
        # Thor is retired first, then Falcon is found retired already: Thor must not stay retired.
        result = post(client, 'execute_action', {'name': 'retire', 'model': 'hero', 'params': {'ids': [1, 2]}})
    assert result.status_code == 400, result.text
    assert 'Falcon has already retired' in result.text
    assert heroes(url)['Thor'][1] is False


def test_enum_and_foreign_key_params_and_options(app: FastAPI, url: str) -> None:
    with TestClient(app) as client:
        actions = {action['name']: action for action in post(client, 'get_action_list').json()}
        fields = {param['name']: param for param in actions['recruit']['params']}
        assert fields['power']['field'] == 'SelectField'  # class Power(str, Enum)
        assert [o['value'] for o in fields['power']['params']['options']] == ['flight', 'strength', 'speed']
        assert fields['team']['field'] == 'ForeignKey'
        teams = post(client, 'get_field_options', {'action': 'recruit', 'field': 'team', 'q': 'defend'}).json()
        assert teams == [{'value': 2, 'name': 'Defenders', 'color': teams[0]['color']}]
        column = post(client, 'get_field_options', {'model': 'hero', 'field': 'team_id'}).json()
        assert [(o['value'], o['name']) for o in column] == [(1, 'Avengers'), (2, 'Defenders')]  # labels, not ids
        powers = post(client, 'get_field_options', {'model': 'hero', 'field': 'power'}).json()
        assert [o['value'] for o in powers] == ['FLIGHT', 'STRENGTH', 'SPEED']
        made = post(client, 'execute_action', {'name': 'recruit',
                                               'params': {'name': 'Luke', 'power': 'speed', 'team': 2}})
        assert made.status_code == 200, made.text
        wrong = post(client, 'execute_action', {'name': 'recruit',
                                                'params': {'name': 'X', 'power': 'telepathy', 'team': 2}})
        assert wrong.status_code == 400 and 'power' in wrong.text
    assert heroes(url)['Luke'] == (Power.SPEED, False, 2)


def test_through_a_real_uvicorn_server(app: FastAPI, url: str) -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=port, log_level='warning'))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, 'uvicorn did not start'
            time.sleep(0.05)
        with httpx.Client(base_url=f'http://127.0.0.1:{port}', timeout=10) as client:
            assert client.get('/heroes').status_code == 200
            assert client.get('/api/health').status_code == 200
            result = post(client, 'execute_action', {'name': 'retire', 'model': 'hero', 'params': {'ids': [1]}})
            assert result.status_code == 200, result.text
            unauthenticated = client.post('/api/messages/', json={'name': 'get_action_list'})
            assert unauthenticated.status_code == 401
            assert unauthenticated.headers['content-type'].startswith('application/json')
    finally:
        server.should_exit = True
        thread.join(timeout=20)
    assert heroes(url)['Thor'][1] is True


def test_bridge_over_sqlmodel_metadata_still_takes_the_users_class(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        bridge = Bridge(SQLModel.metadata, engine=engine, token=TOKEN)

        @bridge.action(model=Hero, for_instance=True)
        def rename(hero: Hero, name: str) -> dict[str, str]:
            assert isinstance(hero, Hero)  # the user's class, not an automapped copy
            hero.name = name
            return {'class': type(hero).__name__}

        assert bridge.execute('rename', model='hero', params={'ids': [1], 'name': 'Thor Odinson'}) == {
            'result': True, 'class': 'Hero'}
    finally:
        engine.dispose()
    assert 'Thor Odinson' in heroes(url)
