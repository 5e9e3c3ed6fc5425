"""Shared fixtures: real SQLite, PostgreSQL and MariaDB databases, and the real Falcon app.

The PostgreSQL and MariaDB legs run whenever those servers answer. Under
``CI=true`` a server that does not answer fails the run instead of skipping it.
Override the URLs with ``JET_SQLA_TEST_POSTGRES_URL`` and ``JET_SQLA_TEST_MARIADB_URL``.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from falcon import testing

from jet_sqla import Bridge

from . import models

POSTGRES_URL = os.environ.get('JET_SQLA_TEST_POSTGRES_URL', 'postgresql+psycopg://postgres@127.0.0.1:5432/test')
MARIADB_URL = os.environ.get('JET_SQLA_TEST_MARIADB_URL', 'mysql+pymysql://root@127.0.0.1:3306/test')
IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')
TOKEN = 'test-token'
AUTH = {'Authorization': f'Bearer {TOKEN}'}
#: Asks for RFC 9457 problem details, whose ``code`` and ``fields`` most tests assert on.
PROBLEM = {'Accept': 'application/problem+json'}

_reachable: dict[str, str | None] = {}


def _check_server(url: str) -> str | None:
    """None when the server answers, else the reason."""
    if url not in _reachable:
        engine = sa.create_engine(url, connect_args=_connect_timeout(url))
        try:
            with engine.connect() as connection:
                connection.execute(sa.text('SELECT 1'))
            _reachable[url] = None
        except sa.exc.SQLAlchemyError as error:
            _reachable[url] = f'{engine.url.render_as_string(hide_password=True)} is unreachable: {error.__class__.__name__}: {str(error.orig if hasattr(error, "orig") else error).strip()[:200]}'
        finally:
            engine.dispose()
    return _reachable[url]


def _connect_timeout(url: str) -> dict[str, Any]:
    if url.startswith('postgresql'):
        return {'connect_timeout': 5}
    if url.startswith('mysql') or url.startswith('mariadb'):
        return {'connect_timeout': 5}
    return {}


def require_server(url: str) -> None:
    """Skip (locally) or fail (under CI) when the database server does not answer."""
    reason = _check_server(url)
    if reason is not None:
        if IN_CI:
            pytest.fail(f'CI=true needs this database: {reason}', pytrace=False)
        pytest.skip(reason)


REDIS_URL = os.environ.get('JET_SQLA_TEST_REDIS_URL', 'redis://127.0.0.1:6379/11')
RABBITMQ_URL = os.environ.get('JET_SQLA_TEST_RABBITMQ_URL', 'amqp://guest:guest@127.0.0.1:5672//')


def _check_broker(url: str) -> str | None:
    """None when the Redis or RabbitMQ broker answers, else the reason."""
    if url not in _reachable:
        import kombu

        connection = kombu.Connection(url, connect_timeout=5)
        try:
            connection.ensure_connection(max_retries=1)
            _reachable[url] = None
        except Exception as error:  # noqa: BLE001 - whatever the transport raises, the broker is unusable
            _reachable[url] = f'{connection.as_uri()} is unreachable: {type(error).__name__}: {str(error)[:200]}'
        finally:
            connection.release()
    return _reachable[url]


def require_broker(url: str) -> None:
    """Skip (locally) or fail (under CI) when the Redis or RabbitMQ broker does not answer."""
    reason = _check_broker(url)
    if reason is not None:
        if IN_CI:
            pytest.fail(f'CI=true needs this broker: {reason}', pytrace=False)
        pytest.skip(reason)


DIALECTS = ['sqlite', 'postgresql', 'mariadb']


_private: dict[str, str] = {}


def private_database(server_url: str) -> str:
    """A database of this test session's own on the server, so parallel runs never collide.

    It is created on first use and dropped when the session ends.
    """
    if server_url not in _private:
        require_server(server_url)
        name = f'jet_sqla_test_{os.getpid()}'
        admin = sa.create_engine(server_url, isolation_level='AUTOCOMMIT')
        with admin.connect() as connection:
            quoted = admin.dialect.identifier_preparer.quote(name)
            if admin.dialect.name == 'postgresql':
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS {quoted} WITH (FORCE)'))
            else:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS {quoted}'))
            connection.execute(sa.text(f'CREATE DATABASE {quoted}'))
        admin.dispose()
        _private[server_url] = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return _private[server_url]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for server_url in _private:
        admin = sa.create_engine(server_url, isolation_level='AUTOCOMMIT')
        try:
            with admin.connect() as connection:
                name = sa.make_url(_private[server_url]).database
                quoted = admin.dialect.identifier_preparer.quote(name)
                force = ' WITH (FORCE)' if admin.dialect.name == 'postgresql' else ''
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS {quoted}{force}'))
        except sa.exc.SQLAlchemyError:
            pass
        finally:
            admin.dispose()


def database_url(dialect: str, tmp_path: Any) -> str:
    """A URL of an empty-to-be database of ``dialect`` for one test."""
    if dialect == 'sqlite':
        return f'sqlite:///{tmp_path / "test.db"}'
    return private_database(POSTGRES_URL if dialect == 'postgresql' else MARIADB_URL)


@pytest.fixture
def cli_process_state() -> Iterator[None]:
    """Undo what the ``jet-sqla`` command does to the process when a test invokes it in-process.

    It sets ``JET_SQLA_*`` environment variables and installs its logging (handlers, levels, and
    the flags that stop records collecting the caller and the thread); later tests must not inherit them.
    """
    saved_environment = dict(os.environ)
    for key in [key for key in os.environ if key.startswith('JET_SQLA_')]:
        del os.environ[key]
    loggers = [logging.getLogger(), logging.getLogger('gunicorn.error'), logging.getLogger('gunicorn.access')]
    saved_loggers = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    saved_flags = (logging._srcfile, logging.logThreads, logging.logMultiprocessing)
    yield
    logging._srcfile, logging.logThreads, logging.logMultiprocessing = saved_flags
    os.environ.clear()
    os.environ.update(saved_environment)
    for logger, handlers, level, propagate in saved_loggers:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def collector_enabled() -> Iterator[None]:
    """Every test starts with the collector on, and leaves it as it found it."""
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def run_in_threads(work: Callable[[int], None], count: int) -> None:
    """``work(0)`` to ``work(count - 1)``, each in a thread of its own, all at once; returns when all have."""
    threads = [threading.Thread(target=work, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[tuple[Path, io.TextIOWrapper]]:
    """A log file open for writing, and its path: what a LineHandler under test writes to."""
    path = tmp_path / 'lines.log'
    with open(path, 'w', encoding='utf-8') as stream:
        yield path, stream


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(dialect: str, tmp_path: Any) -> str:
    return database_url(dialect, tmp_path)


def fresh_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine on a database holding exactly the test models' tables, empty."""
    engine = sa.create_engine(url, connect_args=_connect_timeout(url), **kwargs)
    models.reset(engine)
    return engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = fresh_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def make_bridge(engine: sa.Engine) -> Callable[..., Bridge]:
    """Builds a Bridge over the test models; keyword arguments go to Bridge."""

    def make(**kwargs: Any) -> Bridge:
        kwargs.setdefault('token', TOKEN)
        return Bridge(models.Base, engine=engine, **kwargs)

    return make


@pytest.fixture
def bridge(make_bridge: Callable[..., Bridge]) -> Bridge:
    return make_bridge()


class Client:
    """The real Falcon app, through falcon.testing, speaking the messages protocol.

    It asks for problem details (``Accept: application/problem+json``) unless
    ``headers`` say otherwise, so errors carry their ``code`` and ``fields``;
    Jet's own dialect, the default for other clients, is tested in test_dialect_errors.py.
    """

    def __init__(self, bridge: Bridge, headers: dict[str, str] | None = None) -> None:
        self.bridge = bridge
        self._client: testing.TestClient | None = None
        self.headers = {**PROBLEM, **(AUTH if headers is None else headers)}

    @property
    def http(self) -> testing.TestClient:
        if self._client is None:  # built on first use, after the test declared its actions
            self._client = testing.TestClient(self.bridge.wsgi_app())
        return self._client

    def message(self, name: str, params: Any = None, *, headers: dict[str, str] | None = None,
                path: str = '/api/messages/') -> testing.Result:
        body: dict[str, Any] = {'name': name}
        if params is not None:
            body['params'] = params
        return self.http.simulate_post(path, json=body, headers={**self.headers, **(headers or {})})

    def execute(self, action: str, model: str | None = None, **form: Any) -> testing.Result:
        params: dict[str, Any] = {'name': action, 'params': form}
        if model is not None:
            params['model'] = model
        return self.message('execute_action', params)


@pytest.fixture
def client(bridge: Bridge) -> Client:
    return Client(bridge)


class StatementLog:
    """Every SQL statement an engine runs while recording."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        self.recording = False
        sa.event.listen(engine, 'before_cursor_execute', self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if self.recording:
            self.statements.append(statement)

    def __enter__(self) -> StatementLog:
        self.statements.clear()
        self.recording = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.recording = False

    def selects(self) -> list[str]:
        """The SELECTs. The bound on a read's statements is left out: PostgreSQL's ``set_config(…)``
        SELECT, and MariaDB's ``SET STATEMENT max_statement_time=… FOR`` prefix."""
        found = []
        for statement in self.statements:
            statement = re.sub(r'^\s*SET STATEMENT max_statement_time=\S+ FOR ', '', statement)
            if statement.lstrip().upper().startswith('SELECT') and 'set_config(' not in statement:
                found.append(statement)
        return found


@pytest.fixture
def statements(engine: sa.Engine) -> StatementLog:
    return StatementLog(engine)
