"""Background actions of a Flask-SQLAlchemy app: each chunk runs inside the app context, on db.session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import Bridge, migrations

from .conftest import (
    AUTH,
    POSTGRES_URL,
    REDIS_URL,
    TOKEN,
    private_database,
    require_broker,
)


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Ticket(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = 'tickets'
    id: Mapped[int] = mapped_column(primary_key=True)
    seen: Mapped[int] = mapped_column(default=0)


bridge = Bridge(db.Model, token=TOKEN)


@bridge.action(model=Ticket, for_instance=True, bulk=True, background=True, chunk_size=2)
def see(tickets: list[Ticket], session: Session) -> None:
    assert session is db.session() and flask.current_app.name == 'tickets'  # the app's own session and context
    for ticket in tickets:
        ticket.seen += 1


def test_a_background_chunk_runs_in_the_flask_app_context_on_db_session(tmp_path: Path) -> None:
    app = flask.Flask('tickets')
    app.config['SQLALCHEMY_DATABASE_URI'] = f'sqlite:///{tmp_path / "tickets.db"}'
    db.init_app(app)
    with app.app_context():
        db.create_all()
        migrations.upgrade(db.engine)
        db.session.add_all(Ticket(id=i) for i in range(1, 6))
        db.session.commit()
    bridge.init_app(app)
    client = app.test_client()

    def send(name: str, params: dict[str, Any]) -> Any:
        response = client.post('/api/messages/', json={'name': name, 'params': params}, headers=AUTH)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    job = send('execute_action', {'name': 'see', 'ids': [1, 2, 3, 4, 5]})['job']
    deadline = time.monotonic() + 30
    while (state := send('get_job', {'job': job}))['status'] in ('queued', 'running'):
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert (state['status'], state['done'], state['errors']) == ('succeeded', 5, [])
    with app.app_context():
        assert set(db.session.scalars(sa.select(Ticket.seen))) == {1}
        db.engine.dispose()


JET_SQLA = str(Path(sys.executable).with_name('jet-sqla'))
REPO = Path(__file__).resolve().parents[1]


def _worker(*argv: str, env: dict[str, str], **options: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([JET_SQLA, 'worker', *argv], cwd=REPO, env={**os.environ, **env}, **options)


def test_the_worker_refuses_a_flask_sqlalchemy_bridge_and_says_to_give_the_app(tmp_path: Path) -> None:
    """Such a bridge gets its database at init_app: given the bridge alone, the worker would have none."""
    env = {'JET_SQLA_DATABASE_URL': f'sqlite:///{tmp_path / "parcels.db"}', 'JET_SQLA_BROKER_URL': REDIS_URL,
           'JET_SQLA_TOKEN': TOKEN}
    process = _worker('tests.apps.flask_jobs:bridge', env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=60)
    message = stderr.decode()
    assert process.returncode == 1, message
    assert 'Flask-SQLAlchemy bridge' in message and 'module:create_app' in message
    assert 'Traceback' not in message and len(message.strip().splitlines()) == 1


@pytest.mark.e2e
def test_the_worker_runs_a_flask_sqlalchemy_bridge_given_its_app_factory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_broker(REDIS_URL)
    url = private_database(POSTGRES_URL)
    queue = f'jet_sqla_test_flask_{os.getpid()}_{uuid.uuid4().hex[:8]}'
    env = {'JET_SQLA_DATABASE_URL': url, 'JET_SQLA_BROKER_URL': REDIS_URL, 'JET_SQLA_JOB_QUEUE': queue,
           'JET_SQLA_TOKEN': TOKEN}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for name in ('tests.apps.flask_jobs', 'tests.apps.flask_jobs_factory'):
        sys.modules.pop(name, None)  # built from this test's environment (broker, queue)
    from .apps import flask_jobs, flask_jobs_factory

    engine = sa.create_engine(url)
    try:
        migrations.upgrade(engine)  # before init_app, which checks that the job tables exist
        flask_jobs.Base.metadata.drop_all(engine)
        flask_jobs.Base.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(sa.insert(flask_jobs.Parcel), [{'id': i, 'scanned': 0} for i in range(1, 11)])
    finally:
        engine.dispose()
    app = flask_jobs_factory.create_app()
    log = (tmp_path / 'worker.log').open('wb')
    worker = _worker('tests.apps.flask_jobs_factory:create_app', '--concurrency', '1', env=env,
                     stdout=log, stderr=subprocess.STDOUT)
    client = app.test_client()

    def send(name: str, params: dict[str, Any]) -> Any:
        response = client.post('/api/messages/', json={'name': name, 'params': params}, headers=AUTH)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    try:
        accepted = send('execute_action', {'name': 'scan', 'ids': list(range(1, 11))})
        assert accepted['chunks'] == 4
        deadline = time.monotonic() + 60
        while (state := send('get_job', {'job': accepted['job']}))['status'] in ('queued', 'running'):
            assert worker.poll() is None, (tmp_path / 'worker.log').read_text()
            assert time.monotonic() < deadline, (state, (tmp_path / 'worker.log').read_text())
            time.sleep(0.1)
        # Every chunk ran in the worker, inside the app's context (the action fails anywhere else).
        assert (state['status'], state['done'], state['errors']) == ('succeeded', 10, []), state
        with app.app_context():
            assert set(flask_jobs.db.session.scalars(sa.select(flask_jobs.Parcel.scanned))) == {1}
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
        log.close()
        app.extensions['jet_sqla'][0].jobs.celery().close()
        with app.app_context():
            flask_jobs.db.engine.dispose()
