"""Background actions on real Celery worker processes (``jet-sqla worker``), on Redis and RabbitMQ,
over PostgreSQL and MariaDB: many records over two workers, a worker process killed mid-chunk, a raising
chunk, cancel, and a lost publish that the workers' sweep recovers.

Each run uses queues of its own, so parallel runs never take each other's chunks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jet_sqla import Bridge, migrations
from jet_sqla.jobs import chunk_table, job_table

from .apps import jobs_app
from .conftest import (
    MARIADB_URL,
    POSTGRES_URL,
    RABBITMQ_URL,
    REDIS_URL,
    TOKEN,
    Client,
    fresh_engine,
    private_database,
    require_broker,
)
from .jobs_helpers import add_counters, counter_values, state_of, wait_for_job

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
JET_SQLA = str(Path(sys.executable).with_name('jet-sqla'))
BROKERS = {'redis': REDIS_URL, 'rabbitmq': RABBITMQ_URL}
DATABASES = {'postgresql': POSTGRES_URL, 'mariadb': MARIADB_URL}


@dataclass
class Setup:
    """Two ``jet-sqla worker`` processes on one broker and one database, and a Bridge that accepts jobs."""

    engine: sa.Engine
    broker: str
    queue: str
    trace: Path
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    logs: Path | None = None

    def bridge(self) -> Bridge:
        bridge = Bridge(jobs_app.Base, engine=self.engine, token=TOKEN, broker=self.broker, job_queue=self.queue)
        jobs_app.declare(bridge)
        return bridge

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        assert self.logs is not None
        log = (self.logs / f'worker-{name}.log').open('ab')
        process = subprocess.Popen(
            [JET_SQLA, 'worker', 'tests.apps.jobs_app:bridge', '--concurrency', '1', '--log-level', 'info'],
            cwd=REPO, env={**self.environment, 'JOBS_TEST_WORKER': name}, stdout=log, stderr=subprocess.STDOUT,
        )
        self.workers[name] = process
        return process

    def trace_lines(self) -> list[tuple[str, int, int, float]]:
        if not self.trace.exists():
            return []
        lines = []
        for line in self.trace.read_text().splitlines():
            worker, pid, first_id, at = line.split()
            lines.append((worker, int(pid), int(first_id), float(at)))
        return lines

    def worker_log(self) -> str:
        assert self.logs is not None
        return '\n'.join(path.read_text(errors='replace')[-3000:] for path in sorted(self.logs.glob('*.log')))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _delete_queues(broker: str, queues: list[str]) -> None:
    import kombu

    with kombu.Connection(broker, connect_timeout=5) as connection:
        channel = connection.default_channel
        for queue in queues:
            try:
                channel.queue_delete(queue)
            except Exception:  # noqa: BLE001 - a queue never declared is as good as deleted
                pass


@pytest.fixture(scope='module', params=[('redis', 'postgresql'), ('redis', 'mariadb'),
                                        ('rabbitmq', 'postgresql'), ('rabbitmq', 'mariadb')],
                ids=lambda param: '-'.join(param))
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    broker_name, database_name = request.param
    broker = BROKERS[broker_name]
    require_broker(broker)
    url = private_database(DATABASES[database_name])
    engine = fresh_engine(url)
    migrations.upgrade(engine)
    directory = tmp_path_factory.mktemp(f'jobs-{broker_name}-{database_name}')
    queue = f'jet_sqla_test_{os.getpid()}_{uuid.uuid4().hex[:8]}'
    setup = Setup(engine=engine, broker=broker, queue=queue, trace=directory / 'trace.txt', logs=directory)
    setup.environment = {
        **os.environ,
        'JET_SQLA_DATABASE_URL': url,
        'JET_SQLA_BROKER_URL': broker,
        'JET_SQLA_JOB_QUEUE': queue,
        'JET_SQLA_TOKEN': TOKEN,
        'JET_SQLA_SWEEP_INTERVAL': '1',
        'JET_SQLA_SWEEP_GRACE': '2',
        # Redis redelivers a chunk held by a worker that vanished after this long (RabbitMQ at once).
        'JET_SQLA_VISIBILITY_TIMEOUT': '8',
        'JOBS_TEST_TRACE': str(setup.trace),
    }
    try:
        setup.start_worker('a')
        setup.start_worker('b')
        yield setup
    finally:
        for process in setup.workers.values():
            _stop(process)
        _delete_queues(broker, [queue])
        engine.dispose()


@pytest.fixture
def jobs(setup: Setup) -> Iterator[tuple[Setup, Client]]:
    with setup.engine.begin() as connection:
        connection.execute(sa.text('DELETE FROM counters'))
    setup.trace.unlink(missing_ok=True)
    for name, process in list(setup.workers.items()):
        assert process.poll() is None, f'worker {name} exited ({process.returncode}):\n{setup.worker_log()}'
    client = Client(setup.bridge())
    yield setup, client
    app = getattr(client.bridge.jobs.runner, '_app', None)
    if app is not None:
        app.close()  # its broker connections, opened to publish


def _wait(setup: Setup, client: Client, job: str, **kwargs: Any) -> dict[str, Any]:
    try:
        return wait_for_job(state_of(client), job, **kwargs)
    except AssertionError as error:
        raise AssertionError(f'{error}\n--- worker logs ---\n{setup.worker_log()}') from None


def test_twenty_thousand_records_over_two_workers(jobs: tuple[Setup, Client]) -> None:
    setup, client = jobs
    add_counters(setup.engine, 20_000)
    accepted = client.execute('bump', ids=','.join(str(i) for i in range(1, 20_001)))
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json['total'], accepted.json['chunks']) == (20_000, 40)
    state = _wait(setup, client, accepted.json['job'], timeout=120)
    assert state['status'] == 'succeeded', state
    assert (state['done'], state['failed'], state['errors']) == (20_000, 0, [])
    values = counter_values(setup.engine)
    assert len(values) == 20_000 and set(values.values()) == {1}
    assert {worker for worker, *_ in setup.trace_lines()} == {'a', 'b'}  # both workers took chunks


def _inside_a_chunk(setup: Setup, worker: str) -> tuple[str, int, int, float]:
    """Wait until ``worker`` is inside a chunk: its writes flushed, uncommitted, and sleeping."""
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, setup.worker_log()
        lines = [line for line in setup.trace_lines() if line[0] == worker]
        if lines and time.time() - lines[-1][3] < 0.1:
            return lines[-1]
        time.sleep(0.01)


def _children(pid: int) -> list[int]:
    children = Path(f'/proc/{pid}/task/{pid}/children')
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def test_a_worker_process_killed_mid_chunk_each_row_incremented_exactly_once(jobs: tuple[Setup, Client]) -> None:
    setup, client = jobs
    add_counters(setup.engine, 3_000)
    job = client.execute('bump_small', ids=list(range(1, 3_001)), sleep=0.4).json['job']
    victim = _inside_a_chunk(setup, 'a')
    os.kill(victim[1], signal.SIGKILL)
    state = _wait(setup, client, job, timeout=120)
    assert state['status'] == 'succeeded', state
    assert state['done'] == 3_000
    values = counter_values(setup.engine)
    assert set(values.values()) == {1}, {key: value for key, value in values.items() if value != 1}
    # The interrupted chunk was started twice: once in the killed process, once again after redelivery.
    starts = [line[2] for line in setup.trace_lines()]
    assert starts.count(victim[2]) == 2
    assert [line for line in setup.trace_lines() if line[2] == victim[2]][-1][1] != victim[1]


def test_a_whole_worker_killed_mid_chunk_its_chunk_runs_again_elsewhere(jobs: tuple[Setup, Client]) -> None:
    """The machine dies: the worker's main process and its pool process are SIGKILLed together."""
    setup, client = jobs
    add_counters(setup.engine, 2_000)
    job = client.execute('bump_small', ids=list(range(1, 2_001)), sleep=0.4).json['job']
    victim = _inside_a_chunk(setup, 'a')
    main = setup.workers['a']
    pool = _children(main.pid)
    assert victim[1] in pool
    for pid in [victim[1], main.pid, *pool]:  # the chunk's process first: no orphan may commit it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    main.wait(10)
    try:
        state = _wait(setup, client, job, timeout=120)
        assert state['status'] == 'succeeded' and state['done'] == 2_000, state
        values = counter_values(setup.engine)
        assert set(values.values()) == {1}, {key: value for key, value in values.items() if value != 1}
        again = [line for line in setup.trace_lines() if line[2] == victim[2]]
        assert len(again) == 2 and again[-1][0] == 'b'  # run again, whole, by the surviving worker
    finally:
        setup.start_worker('a')


def test_a_raising_chunk_leaves_its_rows_untouched_and_the_others_done(jobs: tuple[Setup, Client]) -> None:
    setup, client = jobs
    add_counters(setup.engine, 2_000)
    job = client.execute('bump', ids=list(range(1, 2_001)), cursed=777).json['job']
    state = _wait(setup, client, job)
    assert state['status'] == 'failed'
    assert (state['done'], state['failed']) == (1_500, 500)
    assert state['errors'] == [{'first_id': 501, 'last_id': 1000, 'message': 'counter 777 is cursed'}]
    values = counter_values(setup.engine)
    assert {values[i] for i in range(501, 1001)} == {0}
    assert {value for key, value in values.items() if not 501 <= key <= 1000} == {1}


def test_cancel_stops_the_chunks_not_started(jobs: tuple[Setup, Client]) -> None:
    setup, client = jobs
    add_counters(setup.engine, 3_000)
    job = client.execute('bump_small', ids=list(range(1, 3_001)), sleep=0.2).json['job']
    _wait(setup, client, job, until=('running',))
    while state_of(client)(job)['done'] < 200:
        time.sleep(0.02)
    cancelled = client.message('cancel_job', {'job': job})
    assert cancelled.status_code == 200 and cancelled.json['status'] == 'cancelled'
    # Every chunk delivered after the cancel is skipped; wait until none is left queued.
    deadline = time.monotonic() + 60
    while True:
        with setup.engine.connect() as connection:
            statuses = dict(connection.execute(
                sa.select(chunk_table.c.status, sa.func.count()).where(chunk_table.c.job_id == job)
                .group_by(chunk_table.c.status)).all())
        if 'queued' not in statuses:
            break
        assert time.monotonic() < deadline, (statuses, setup.worker_log())
        time.sleep(0.1)
    state = state_of(client)(job)
    values = counter_values(setup.engine)
    assert state['status'] == 'cancelled'
    assert statuses.get('cancelled', 0) >= 20  # most of the 30 chunks never ran
    assert sum(values.values()) == state['done'] == statuses['done'] * 100
    assert set(values.values()) <= {0, 1}


def test_a_lost_publish_is_recovered_by_the_sweep(jobs: tuple[Setup, Client]) -> None:
    setup, client = jobs
    add_counters(setup.engine, 1_000)

    def die(receipt: Any) -> None:
        raise SystemError('the web process died between the COMMIT and the publish')

    client.bridge.jobs.runner.publish = die  # type: ignore[method-assign]
    job = client.execute('bump', ids=list(range(1, 1_001))).json['job']
    with setup.engine.connect() as connection:
        assert connection.scalar(sa.select(job_table.c.published_at).where(job_table.c.id == job)) is None
    time.sleep(1)
    assert set(counter_values(setup.engine).values()) == {0}  # nothing reached the workers
    state = _wait(setup, client, job, timeout=60)
    assert state['status'] == 'succeeded' and state['done'] == 1_000
    assert set(counter_values(setup.engine).values()) == {1}
    with setup.engine.connect() as connection:
        assert connection.scalar(sa.select(job_table.c.published_at).where(job_table.c.id == job)) is not None


def _publish_by_hand(client: Client) -> None:
    """Accepted jobs are recorded, not published: the test publishes their runs itself."""
    client.bridge.jobs.runner.publish = lambda receipt: None  # type: ignore[method-assign]


def test_one_task_runs_a_run_of_chunks_each_in_its_own_transaction(jobs: tuple[Setup, Client]) -> None:
    setup, client = jobs
    add_counters(setup.engine, 1_000)
    _publish_by_hand(client)
    job = client.execute('bump_small', ids=list(range(1, 1_001))).json['job']
    client.bridge.jobs.store.mark_published(job)  # so that the sweep leaves it alone
    runs = client.bridge.jobs.runner.publish_chunks(job, task_records=10**9, min_tasks=2)
    assert runs == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]  # two messages for ten chunks
    state = _wait(setup, client, job, timeout=60)
    assert state['status'] == 'succeeded' and state['done'] == 1_000, state
    assert set(counter_values(setup.engine).values()) == {1}
    started = {first_id: pid for _, pid, first_id, _ in setup.trace_lines()}
    assert sorted(started) == list(range(1, 1_001, 100))  # each chunk called the action once
    # Each run's five chunks ran in one process, one after another: one task.
    assert len({started[first_id] for first_id in range(1, 501, 100)}) == 1
    assert len({started[first_id] for first_id in range(501, 1_001, 100)}) == 1


def test_a_worker_process_killed_in_the_middle_of_a_run_of_chunks_gives_exactly_once(
        jobs: tuple[Setup, Client]) -> None:
    setup, client = jobs
    add_counters(setup.engine, 600)
    _publish_by_hand(client)
    job = client.execute('bump_small', ids=list(range(1, 601)), sleep=0.4).json['job']
    client.bridge.jobs.store.mark_published(job)
    assert client.bridge.jobs.runner.publish_chunks(job, task_records=10**9, min_tasks=1) == [[0, 1, 2, 3, 4, 5]]
    deadline = time.monotonic() + 60
    while not (victim := [line for line in setup.trace_lines() if line[2] == 201]):
        assert time.monotonic() < deadline, setup.worker_log()
        time.sleep(0.01)
    os.kill(victim[0][1], signal.SIGKILL)  # inside the third chunk of the run, before its COMMIT
    state = _wait(setup, client, job, timeout=120)
    assert state['status'] == 'succeeded' and state['done'] == 600, state
    values = counter_values(setup.engine)
    assert set(values.values()) == {1}, {key: value for key, value in values.items() if value != 1}
    starts = [line[2] for line in setup.trace_lines()]
    # The run was delivered again: its two committed chunks were skipped, the killed one ran again.
    assert (starts.count(1), starts.count(101), starts.count(201)) == (1, 1, 2), starts
    assert [starts.count(first_id) for first_id in (301, 401, 501)] == [1, 1, 1], starts


class TestWorkerCommand:
    """``jet-sqla worker`` refuses, in one line, to start without what it needs."""

    def run(self, tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {key: value for key, value in os.environ.items()
                       if key not in ('JET_SQLA_BROKER_URL', 'JET_SQLA_TARGET')}
        environment.update({'JET_SQLA_DATABASE_URL': f'sqlite:///{tmp_path / "worker.db"}', **env})
        return subprocess.run([JET_SQLA, 'worker', *argv], cwd=REPO, env=environment, capture_output=True,
                              text=True, timeout=60, check=False)

    def test_without_a_target(self, tmp_path: Path) -> None:
        result = self.run(tmp_path)
        assert result.returncode == 1 and 'give a TARGET' in result.stderr and 'Traceback' not in result.stderr

    def test_without_a_broker(self, tmp_path: Path) -> None:
        result = self.run(tmp_path, 'tests.apps.jobs_app:bridge')
        assert result.returncode == 1, result.stderr
        assert 'has no broker' in result.stderr and 'JET_SQLA_BROKER_URL' in result.stderr
        assert 'Traceback' not in result.stderr

    def test_without_the_job_tables(self, tmp_path: Path) -> None:
        result = self.run(tmp_path, 'tests.apps.jobs_app:bridge', JET_SQLA_BROKER_URL=REDIS_URL)
        assert result.returncode == 1, result.stderr
        assert 'jet_sqla_job' in result.stderr and 'jet-sqla db upgrade' in result.stderr
        assert 'Traceback' not in result.stderr
