"""A broker outage in the middle of a job: a real ``jet-sqla worker`` on a private Redis that dies and comes back.

The Redis server is this test's own, on a free loopback port, keeping nothing
on disk: killing it loses every message it held, as a Redis restarted without
persistence (or failed over to an empty replica) does. No shared service is
touched. The job must still finish with every record incremented exactly once,
and a job accepted while the broker is away must be accepted, then published
by the workers' sweep once it is back.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jet_sqla import Bridge, migrations
from jet_sqla.jobs import chunk_table

from .apps import jobs_app
from .apps.cli_server import free_port
from .conftest import IN_CI, POSTGRES_URL, TOKEN, Client, fresh_engine, private_database
from .jobs_helpers import add_counters, counter_values, wait_for_job
from .test_jobs_celery import JET_SQLA, REPO, _stop

pytestmark = pytest.mark.e2e

#: How long the broker stays away.
OUTAGE_SECONDS = 3.0
#: The whole test, outage included, must finish well within a minute.
DEADLINE_SECONDS = 50.0


class PrivateRedis:
    """A redis-server of this test's own: no persistence, loopback only."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f'redis://127.0.0.1:{self.port}/0'

    def start(self) -> None:
        log = (self.directory / 'redis.log').open('ab')
        self.process = subprocess.Popen(
            ['redis-server', '--port', str(self.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
             '--dir', str(self.directory)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1) as connection:
                    connection.sendall(b'PING\r\n')
                    if connection.recv(16).startswith(b'+PONG'):
                        return
            except OSError:
                pass
            assert self.process.poll() is None, (self.directory / 'redis.log').read_text()
            assert time.monotonic() < deadline, 'the private redis-server did not answer'
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which('redis-server') is None:
        if IN_CI:
            pytest.fail('CI=true needs redis-server on the PATH for the broker-outage test', pytrace=False)
        pytest.skip('redis-server is not installed')
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def _queued(engine: sa.Engine, job: str) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(chunk_table).where(
            chunk_table.c.job_id == job, chunk_table.c.status == 'queued')) or 0


def test_a_broker_outage_mid_job_loses_no_chunk_and_runs_each_record_once(redis: PrivateRedis, tmp_path: Path) -> None:
    started = time.monotonic()
    url = private_database(POSTGRES_URL)
    engine = fresh_engine(url)
    migrations.upgrade(engine)
    add_counters(engine, 3_100)
    queue = f'jet_sqla_outage_{os.getpid()}_{uuid.uuid4().hex[:8]}'
    environment = {
        **os.environ, 'JET_SQLA_DATABASE_URL': url, 'JET_SQLA_BROKER_URL': redis.url, 'JET_SQLA_JOB_QUEUE': queue,
        'JET_SQLA_TOKEN': TOKEN, 'JET_SQLA_SWEEP_INTERVAL': '1', 'JET_SQLA_SWEEP_GRACE': '2',
        'JET_SQLA_SWEEP_STALL': '3', 'JOBS_TEST_TRACE': str(tmp_path / 'trace.txt'), 'JOBS_TEST_WORKER': 'a',
    }
    log_path = tmp_path / 'worker.log'
    worker = subprocess.Popen(
        [JET_SQLA, 'worker', 'tests.apps.jobs_app:bridge', '--concurrency', '1', '--log-level', 'info'],
        cwd=REPO, env=environment, stdout=log_path.open('ab'), stderr=subprocess.STDOUT)
    bridge = Bridge(jobs_app.Base, engine=engine, token=TOKEN, broker=redis.url, job_queue=queue)
    jobs_app.declare(bridge)
    client = Client(bridge)

    def state(job: str) -> dict[str, Any]:
        answer: dict[str, Any] = client.message('get_job', {'job': job}).json
        return answer

    def worker_log() -> str:
        return log_path.read_text(errors='replace')[-4000:]

    try:
        # 30 chunks of 100, each sleeping 0.2 s: about 6 s of work for the one worker process.
        accepted = client.execute('bump_small', ids=list(range(1, 3_001)), sleep=0.2)
        assert accepted.status_code == 200, accepted.text
        job = accepted.json['job']
        deadline = time.monotonic() + 20
        while state(job)['done'] < 300:
            assert time.monotonic() < deadline, worker_log()
            time.sleep(0.05)
        redis.kill()  # mid-job: every message still in the broker is gone with it
        assert 0 < _queued(engine, job) < 30, 'the job was not mid-flight when the broker went away'
        # Accepting goes on during the outage: the job is recorded, its publish fails, the sweep publishes it.
        asked = time.monotonic()
        during = client.execute('bump_small', ids=list(range(3_001, 3_101)))
        accept_seconds = time.monotonic() - asked
        assert during.status_code == 200, during.text
        time.sleep(max(0.0, OUTAGE_SECONDS - accept_seconds))
        assert worker.poll() is None, f'the worker exited when the broker went away:\n{worker_log()}'
        redis.start()  # the same port, empty
        final = wait_for_job(state, job, timeout=DEADLINE_SECONDS - (time.monotonic() - started))
        assert final['status'] == 'succeeded', (final, worker_log())
        assert (final['done'], final['failed']) == (3_000, 0), final
        late = wait_for_job(state, during.json['job'], timeout=DEADLINE_SECONDS - (time.monotonic() - started))
        assert (late['status'], late['done']) == ('succeeded', 100), late
        values = counter_values(engine)
        assert len(values) == 3_100
        assert set(values.values()) == {1}, {key: value for key, value in values.items() if value != 1}
        assert worker.poll() is None, 'the worker did not survive the outage'
        print(f'\n[reliability] broker outage: {OUTAGE_SECONDS:g} s down, a job accepted during it in '
              f'{accept_seconds:.2f} s; both jobs succeeded, 3,100 rows at 1, '
              f'{time.monotonic() - started:.1f} s in all')
        # Not redelivered by the broker, which kept nothing: the sweep found the job stalled and republished it.
        assert f'job {job} made no progress' in log_path.read_text(errors='replace'), worker_log()
        assert time.monotonic() - started < DEADLINE_SECONDS
    finally:
        _stop(worker)
        app = getattr(bridge.jobs.runner, '_app', None) if bridge.jobs is not None else None
        if app is not None:
            app.close()
        engine.dispose()


def test_the_sweep_republishes_a_stalled_job_only_when_nothing_waits_in_the_queue(
        redis: PrivateRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job behind a backlog is not stalled: its chunks may be behind the waiting messages."""
    import kombu

    from jet_sqla.jobs.celery_app import Sweep

    monkeypatch.setenv('JET_SQLA_SWEEP_STALL', '0.5')
    engine = fresh_engine(private_database(POSTGRES_URL))
    migrations.upgrade(engine)
    add_counters(engine, 300)
    queue = f'jet_sqla_stall_{os.getpid()}_{uuid.uuid4().hex[:8]}'
    bridge = Bridge(jobs_app.Base, engine=engine, token=TOKEN, broker=redis.url, job_queue=queue)
    jobs_app.declare(bridge)
    assert bridge.jobs is not None
    bridge.jobs.runner.publish = lambda receipt: None  # type: ignore[method-assign]  # "lost" at once
    client = Client(bridge)
    try:
        job = client.execute('bump_small', ids=list(range(1, 301))).json['job']
        bridge.jobs.store.mark_published(job)
        with kombu.Connection(redis.url) as connection:
            connection.SimpleQueue(queue).put({'unrelated': 'message'})  # a backlog of one
            sweep = Sweep(bridge.jobs)
            time.sleep(0.6)
            assert bridge.jobs.store.stalled(sweep.stall) == [job]
            assert sweep.republish_stalled() == 0  # something waits: not republished
            assert bridge.jobs.waiting_messages() == 1
            connection.SimpleQueue(queue).get(timeout=5).ack()
            assert sweep.republish_stalled() == 0  # at most once per stall period
            time.sleep(0.6)
            assert sweep.republish_stalled() == 1
            assert bridge.jobs.waiting_messages() == 3  # its three queued chunks, one run each
        assert _queued(engine, job) == 3  # nothing ran: publishing again changes no chunk's state
    finally:
        app = getattr(bridge.jobs.runner, '_app', None)
        if app is not None:
            app.close()
        engine.dispose()
