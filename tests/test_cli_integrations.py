"""``jet-sqla`` with what users have: a Flask app served as it is, ASGI apps refused, async URLs, --schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from jet_sqla import cli

from .apps.cli_server import serving
from .conftest import POSTGRES_URL, TOKEN, private_database

# The command sets environment variables and installs logging: undone after each test.
pytestmark = pytest.mark.usefixtures('cli_process_state')


@pytest.fixture(autouse=True)
def isolated_environment() -> Iterator[None]:
    saved = dict(os.environ)
    for key in [key for key in os.environ if key.startswith('JET_SQLA_')]:
        del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(saved)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def test_serve_runs_a_flask_app_as_it_is(tmp_path: Path) -> None:
    env = {'JET_SQLA_TOKEN': TOKEN, 'LIBRARY_DATABASE_URL': f'sqlite:///{tmp_path / "library.db"}',
           'LIBRARY_ARCHIVE_URL': f'sqlite:///{tmp_path / "archive.db"}'}
    engine = sa.create_engine(env['LIBRARY_DATABASE_URL'])
    args = ['serve', 'jet_sqla.examples.flask_library.app:create_app()', '--bind', '127.0.0.1:0',
            '--workers', '1', '--threads', '2']
    with serving(args, log_path=tmp_path / 'server.log', token=TOKEN, env=env, cwd=tmp_path) as server:
        status, books = server.request('GET', '/books')  # Flask's own route, over the example's stock
        assert status == 200 and books[0] == {'id': 1, 'title': 'Orlando'}
        status, body = server.message('execute_action', {'name': 'lend', 'model': 'books',
                                                         'params': {'ids': [1], 'borrower': 'Ada'}})
        assert (status, body) == (200, {'result': True, 'lent': 1, 'library': 'City library'})
    with engine.connect() as connection:
        assert connection.execute(sa.text('SELECT on_loan FROM books WHERE id = 1')).scalar_one() == 1
    engine.dispose()


@pytest.mark.parametrize('target', ['tests.apps.asgi_apps:starlette_app', 'tests.apps.asgi_apps:bare_asgi'])
def test_serve_refuses_an_asgi_app_pointing_to_uvicorn(target: str) -> None:
    result = invoke('serve', target, '--token', TOKEN)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert 'ASGI' in lines[0] and f'uvicorn {target}' in lines[0]


def test_serve_refuses_a_fastapi_app_factory(tmp_path: Path) -> None:
    result = invoke('serve', 'jet_sqla.examples.fastapi_heroes.app:create_app()', '--token', TOKEN,
                    env={'HEROES_DATABASE_URL': f'sqlite:///{tmp_path / "heroes.db"}'})
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    # The command it names must work as given: a factory needs uvicorn's --factory.
    assert 'uvicorn --factory jet_sqla.examples.fastapi_heroes.app:create_app' in result.output


def test_actions_accepts_an_async_sqlite_url(tmp_path: Path) -> None:
    path = tmp_path / 'shop.db'
    engine = sa.create_engine(f'sqlite:///{path}')
    with engine.begin() as connection:
        connection.execute(sa.text('CREATE TABLE gadgets (id INTEGER PRIMARY KEY, name TEXT)'))
    engine.dispose()
    result = invoke('actions', f'sqlite+aiosqlite:///{path}')
    assert result.exit_code == 0, result.output
    assert 'gadgets' in result.output


def test_actions_accepts_an_async_postgresql_url_and_schemas() -> None:
    url = sa.make_url(private_database(POSTGRES_URL))
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text('DROP SCHEMA IF EXISTS ledger CASCADE'))
        connection.execute(sa.text('CREATE SCHEMA ledger'))
        connection.execute(sa.text('CREATE TABLE ledger.entries (id int PRIMARY KEY, memo text)'))
    try:
        async_url = url.set(drivername='postgresql+asyncpg').render_as_string(hide_password=False)
        without = invoke('actions', async_url)
        assert without.exit_code == 0, without.output
        assert 'ledger.entries' not in without.output
        result = invoke('actions', async_url, '--schema', 'ledger', '--schema', 'ledger')
        assert result.exit_code == 0, result.output
        assert 'ledger.entries' in result.output
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text('DROP SCHEMA ledger CASCADE'))
        engine.dispose()


def test_a_flask_app_instance_is_served_not_called() -> None:
    from jet_sqla.cli import load_target

    from .apps import flask_target
    loaded = load_target('tests.apps.flask_target:app')
    assert loaded.app is flask_target.app  # used to be called as if it were a factory
    assert loaded.bridges == [flask_target.bridge]
