"""bridge.mount(app): what it accepts, and that a refusal leaves the app untouched."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi
import flask
import pytest
import sqlalchemy as sa
from falcon import testing
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.testclient import TestClient

from jet_sqla import Bridge

from . import models
from .conftest import AUTH, TOKEN


@pytest.fixture
def bridge(engine: sa.Engine) -> Bridge:
    bridge = Bridge(models.Base, engine=engine, token=TOKEN, prefix='/jet')

    @bridge.action()
    def hello() -> dict[str, str]:
        return {'hello': 'world'}

    return bridge


def test_falcon_app_as_before(bridge: Bridge) -> None:
    app = falcon.App()
    assert bridge.mount(app) is app
    result = testing.TestClient(app).simulate_post('/jet/messages/', json={'name': 'execute_action',
                                                                           'params': {'name': 'hello'}}, headers=AUTH)
    assert result.json == {'result': True, 'hello': 'world'}


@pytest.mark.parametrize('kind', [Starlette, FastAPI])
def test_starlette_and_fastapi_under_the_prefix(bridge: Bridge, kind: type[Any]) -> None:
    app = kind()
    assert bridge.mount(app) is app
    with TestClient(app) as client:
        response = client.post('/jet/messages/', json={'name': 'execute_action', 'params': {'name': 'hello'}},
                               headers=AUTH)
        assert response.json() == {'result': True, 'hello': 'world'}
        assert client.get('/jet/openapi.json').json()['paths'].keys() >= {'/jet/messages/'}
        assert client.get('/elsewhere').status_code == 404


def test_flask_without_flask_sqlalchemy(bridge: Bridge) -> None:
    app = flask.Flask('plain')

    @app.get('/ping')
    def ping() -> str:
        return 'pong'

    assert bridge.init_app(app) is app
    client = app.test_client()
    assert client.get('/ping').get_data(as_text=True) == 'pong'
    response = client.post('/jet/messages/', json={'name': 'execute_action', 'params': {'name': 'hello'}},
                           headers=AUTH)
    assert response.get_json() == {'result': True, 'hello': 'world'}


@pytest.mark.parametrize('app', [object(), 'app', None], ids=['object', 'str', 'none'])
def test_anything_else_is_a_type_error(bridge: Bridge, app: Any) -> None:
    with pytest.raises(TypeError, match='falcon.App, a Flask app, or a Starlette/FastAPI app'):
        bridge.mount(app)


def test_a_falcon_asgi_app_is_refused_untouched(bridge: Bridge) -> None:
    app = falcon.asgi.App()
    with pytest.raises(TypeError, match='falcon.asgi.App'):
        bridge.mount(app)
    assert testing.TestClient(app).simulate_get('/jet/health').status_code == 404


def test_a_bridge_not_ready_leaves_the_app_untouched(engine: sa.Engine) -> None:
    # audit=True and no log table: mounting must fail before anything is added.
    bridge = Bridge(models.Base, engine=engine, token=TOKEN, audit=True)
    app = FastAPI()
    routes_before = list(app.routes)
    with pytest.raises(RuntimeError):
        bridge.mount(app)
    assert list(app.routes) == routes_before
    flask_app = flask.Flask('x')
    with pytest.raises(RuntimeError):
        bridge.init_app(flask_app)
    assert 'wsgi_app' not in vars(flask_app)


def test_a_mounted_bridge_needs_a_prefix(engine: sa.Engine) -> None:
    bridge = Bridge(models.Base, engine=engine, token=TOKEN, prefix='')
    app = Starlette()
    with pytest.raises(ValueError, match='prefix'):
        bridge.mount(app)
    assert list(app.routes) == []


def test_the_core_imports_no_framework() -> None:
    import subprocess
    import sys
    code = '''
import sys
import falcon, sqlalchemy as sa
from jet_sqla import Bridge
from tests import models
bridge = Bridge(models.Base, engine=sa.create_engine("sqlite://"), token="t")
bridge.mount(falcon.App())
bridge.wsgi_app()
loaded = [name for name in ("flask", "flask_sqlalchemy", "starlette", "fastapi", "sqlmodel", "a2wsgi")
          if name in sys.modules]
print(",".join(loaded) or "none")
'''
    from pathlib import Path
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, check=False,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'none'
