"""Faults: the database goes away, a client hangs up, a worker is killed, a statement runs too long.

Each fault hits a run between its two writes. Whatever happens, a run is
either wholly there or not there at all: a ref never has one leg of two, and
the gauge always equals the number of complete pairs.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge

from .apps.cli_server import free_port
from .apps.server import Gunicorn, gunicorn
from .apps.faults import create_tables, gauge, pairs_by_ref
from .conftest import IN_CI, TOKEN, Client, database_url, fresh_engine
from .models import Base, Counter, User, drop_everything

pytestmark = pytest.mark.e2e

WORKERS = 2
MARKER_SECONDS = 15


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f'\n[reliability] {line}', flush=True)


def new_ref() -> str:
    return uuid.uuid4().hex[:16]


def wait_for(path: Path, seconds: float = MARKER_SECONDS) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.01)
    raise AssertionError(f'{path.name} never appeared')


def assert_whole_pairs(engine: sa.Engine) -> dict[str, int]:
    """No ref has one leg without the other, and the gauge counts exactly the complete pairs."""
    legs = pairs_by_ref(engine)
    split = {ref: count for ref, count in legs.items() if count != 2}
    assert split == {}, f'half-written runs: {split}'
    assert gauge(engine) == len(legs), 'the gauge and the legs were not written together'
    return legs


@contextlib.contextmanager
def faults_server(url: str, tmp_path: Path, workers: int = WORKERS) -> Iterator[tuple[Gunicorn, sa.Engine, Path]]:
    engine = sa.create_engine(url, pool_pre_ping=True)  # the outage test restarts the server under it
    drop_everything(engine)
    create_tables(engine)
    markers = tmp_path / 'markers'
    markers.mkdir()
    try:
        with gunicorn('tests.apps.faults:create_app()', database_url=url, token=TOKEN, workers=workers,
                      log_path=tmp_path / 'gunicorn.log', env={'JET_SQLA_FAULTS_DIR': str(markers)}) as server:
            yield server, engine, markers
    finally:
        engine.dispose()


def raw_request(server: Gunicorn, action: str, **form: Any) -> socket.socket:
    """Send one execute_action on a bare socket and return it unread, so that the test decides what the client does."""
    body = json.dumps({'name': 'execute_action', 'params': {'name': action, 'params': form}}).encode()
    head = (f'POST /api/messages/ HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {server.token}\r\n'
            f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n').encode()
    sock = socket.create_connection((server.host, server.port), timeout=30)
    sock.sendall(head + body)
    return sock


def hang_up(sock: socket.socket) -> None:
    """Close with a reset, as a crashed client or a dropped network does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


# -- (b) lost client, (c) worker crash: on every database -----------------------------------------


def test_client_that_hangs_up_mid_action_leaves_all_or_nothing(dialect: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with faults_server(database_url(dialect, tmp_path), tmp_path) as (server, engine, markers):
        refs = [new_ref() for _ in range(3)]
        for ref in refs:
            sock = raw_request(server, 'pair_slow', ref=ref, pause=0.3)
            wait_for(markers / f'{ref}.started')  # the first leg is written, the second is not
            hang_up(sock)
        # One more client that hangs up before the server could even read the whole request.
        early = new_ref()
        sock = raw_request(server, 'pair_slow', ref=early, pause=0.3)
        hang_up(sock)

        client = server.client()
        after = client.execute('pair', ref=new_ref())
        assert after.status == 200, after
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(pairs_by_ref(engine)) < len(refs) + 1:
            time.sleep(0.05)  # the hung-up runs finish in their own time
        time.sleep(0.5)
        legs = assert_whole_pairs(engine)
        outcome = {ref: 'committed' if legs.get(ref) == 2 else 'nothing' for ref in [*refs, early]}
        report(capsys, f'lost client {dialect}: {list(outcome.values())}, split runs=0, gauge={gauge(engine)}')
        # The server cannot tell a hung-up client mid-action; it finishes the run whole.
        assert all(outcome[ref] == 'committed' for ref in refs), outcome
        client.close()


def test_worker_killed_mid_action_leaves_no_partial_write(dialect: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with faults_server(database_url(dialect, tmp_path), tmp_path) as (server, engine, markers):
        client = server.client()
        assert client.execute('pair', ref='before').status == 200
        workers = server.worker_pids()
        ref = new_ref()
        sock = raw_request(server, 'pair_then_block', ref=ref)
        victim = int(wait_for(markers / f'{ref}.pid'))
        assert victim in workers
        os.kill(victim, signal.SIGKILL)
        answer = sock.recv(1024)
        sock.close()
        assert answer == b'', f'a killed worker cannot answer, got {answer!r}'

        replacements = server.wait_for_workers(WORKERS, excluding={victim})
        client.close()  # its kept-alive connection may have been to the killed worker
        started = time.monotonic()
        replies = [client.execute('pair', ref=f'after-{number}') for number in range(8)]
        elapsed = time.monotonic() - started
        assert [reply.status for reply in replies] == [200] * 8, replies
        # The killed run held the gauge's row lock: it was released at once, not after a lock timeout.
        assert elapsed < 5, f'{elapsed:.1f}s: a lock of the killed run lingered'
        legs = assert_whole_pairs(engine)
        assert ref not in legs
        assert len(legs) == 9
        report(capsys, f'worker crash {dialect}: killed pid {victim}, replaced by {sorted(set(replacements) - set(workers))}, '
                       f'partial rows=0, later requests 8/8 ok in {elapsed:.2f}s')
        client.close()


# -- (a) database outage: a private PostgreSQL the test starts and stops ----------------------------


def _postgres_bin() -> Path | None:
    configured = os.environ.get('JET_SQLA_TEST_PG_BIN')
    if configured:
        return Path(configured)
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'), key=lambda path: int(path.split('/')[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which('initdb')
    return Path(initdb).parent if initdb else None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temporary directory, on a free loopback port.

    As root it runs as the ``postgres`` user, since ``initdb`` refuses root.
    """

    def __init__(self, binaries: Path, directory: Path) -> None:
        self.binaries = binaries
        self.directory = directory
        self.data = directory / 'data'
        self.port = free_port()
        self.as_user = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f'postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres'

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_user, str(self.binaries / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            log = self.directory / 'postgres.log'
            raise AssertionError(f'{program} failed: {result.stdout}{result.stderr}\n'
                                 f'{log.read_text()[-2000:] if log.exists() else ""}')

    def init(self) -> None:
        self._run('initdb', '-D', str(self.data), '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8')

    def start(self) -> None:
        options = f'-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off'
        self._run('pg_ctl', '-D', str(self.data), '-l', str(self.directory / 'postgres.log'), '-o', options,
                  '-w', '-t', '30', 'start')

    def stop(self, mode: str = 'fast') -> None:
        self._run('pg_ctl', '-D', str(self.data), '-m', mode, '-w', '-t', '30', 'stop')

    def is_running(self) -> bool:
        return (self.data / 'postmaster.pid').exists()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    binaries = _postgres_bin()
    if binaries is None or not (binaries / 'pg_ctl').exists():
        message = 'the outage test needs PostgreSQL server binaries (initdb, pg_ctl); set JET_SQLA_TEST_PG_BIN'
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    directory = Path(tempfile.mkdtemp(prefix='jet_sqla_pg_'))
    if os.geteuid() == 0:
        shutil.chown(directory, 'postgres', 'postgres')
    cluster = PrivatePostgres(binaries, directory)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.is_running():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                cluster.stop('immediate')
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Sent:
    ref: str
    sent_at: float
    answered_at: float
    status: int | None
    body: Any
    content_type: str = ''


class Traffic:
    """Clients sending ``pair`` runs in a loop until stopped, each answer time-stamped."""

    def __init__(self, server: Gunicorn, clients: int = 4, pause: float = 0.01) -> None:
        self.server = server
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, args=(pause,)) for _ in range(clients)]

    def _work(self, pause: float) -> None:
        client = self.server.client(timeout=15)
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            ref = new_ref()
            sent_at = time.monotonic()
            try:
                reply = client.execute('pair', ref=ref)
                record = Sent(ref, sent_at, time.monotonic(), reply.status, reply.body, reply.content_type)
            except OSError as error:
                record = Sent(ref, sent_at, time.monotonic(), None, f'{type(error).__name__}: {error}')
            with self._lock:
                self.sent.append(record)
            time.sleep(pause)
        client.close()

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def between(self, start: float, end: float) -> list[Sent]:
        """The requests sent and answered wholly inside ``[start, end]``."""
        with self._lock:
            return [sent for sent in self.sent if sent.sent_at >= start and sent.answered_at <= end]


def test_database_outage_answers_503_and_recovers(private_postgres: PrivatePostgres, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with faults_server(private_postgres.url, tmp_path) as (server, engine, _):
        with Traffic(server) as traffic:
            time.sleep(1.0)
            healthy_until = time.monotonic()
            private_postgres.stop('immediate')  # a crash, with runs in flight
            down_from = time.monotonic()
            time.sleep(1.5)
            health_down = server.health()
            down_until = time.monotonic()
            private_postgres.start()
            deadline = time.monotonic() + 30
            while server.health() != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
            recovered_from = time.monotonic()
            time.sleep(1.5)
            recovered_until = time.monotonic()

        everything = traffic.sent
        before = traffic.between(0, healthy_until)
        during = traffic.between(down_from, down_until)
        after = traffic.between(recovered_from, recovered_until)
        statuses = sorted({sent.status for sent in everything}, key=str)
        legs = assert_whole_pairs(engine)
        in_doubt = [sent.ref for sent in everything if sent.status == 503 and sent.ref in legs]
        report(capsys, f'outage postgresql: requests={len(everything)} before={len(before)} during={len(during)} '
                       f'after={len(after)} statuses={statuses} split runs=0 pairs={len(legs)} '
                       f'503-but-committed={len(in_doubt)}')

        # Every answer is JSON, and only ever a success or a 503: no 500, no HTML, no hang.
        assert statuses == [200, 503], [sent for sent in everything if sent.status not in (200, 503)][:5]
        assert all(sent.content_type.startswith('application/json') and isinstance(sent.body, dict) for sent in everything)
        assert before and all(sent.status == 200 for sent in before)
        assert len(during) >= 10, 'too few requests during the outage to say anything'
        assert {sent.status for sent in during} == {503}
        assert all(sent.body['error_code'] == 'database_unavailable' and sent.body['detail'] for sent in during)
        assert health_down == 503
        # Recovered without restarting anything: the pools threw their dead connections away.
        assert len(after) >= 10 and all(sent.status == 200 for sent in after), [s.status for s in after]
        # Every acknowledged run is there, whole.
        assert all(legs.get(sent.ref) == 2 for sent in everything if sent.status == 200)


@pytest.fixture(params=['postgresql+psycopg', 'mysql+pymysql'])
def unreachable(request: pytest.FixtureRequest) -> Iterator[Client]:
    """The real app over a database server that is not there: nothing listens on the port."""
    engine = sa.create_engine(f'{request.param}://root@127.0.0.1:{free_port()}/gone', connect_args={'connect_timeout': 2})
    bridge = Bridge(Base, engine=engine, token=TOKEN)

    @bridge.action(model=User, for_instance=True)
    def touch(user: User) -> None:
        raise AssertionError('cannot run without a database')

    yield Client(bridge)
    engine.dispose()


def test_unreachable_database_fails_actions_with_503(unreachable: Client) -> None:
    result = unreachable.execute('touch', 'users', ids='1')
    assert result.status_code == 503, result.text
    assert result.json['code'] == 'database_unavailable'
    assert result.headers.get('Retry-After') == '1'
    health = unreachable.http.simulate_get('/api/health')
    assert health.status_code == 503
    assert health.json == {'status': 'unavailable', 'database': 'unreachable'}


def test_unreachable_database_fails_other_messages_with_503(unreachable: Client) -> None:
    result = unreachable.message('get_field_options', {'model': 'accounts', 'field': 'owner_id'})
    assert result.status_code == 503, result.text
    assert result.json['code'] == 'database_unavailable'


@pytest.mark.parametrize('dialect', ['postgresql', 'mariadb'])
def test_connection_lost_at_commit_says_the_outcome_is_unknown(dialect: str, tmp_path: Path) -> None:
    """The connection dies as the COMMIT goes out: the client must not be told that nothing changed."""
    url = database_url(dialect, tmp_path)
    engine = fresh_engine(url)
    admin = sa.create_engine(url, isolation_level='AUTOCOMMIT')
    bridge = Bridge(Base, engine=engine, token=TOKEN)
    own_id = 'SELECT pg_backend_pid()' if dialect == 'postgresql' else 'SELECT CONNECTION_ID()'

    def kill_at_commit(connection: sa.Connection) -> None:
        server_id = connection.info.pop('kill_at_commit', None)
        if server_id is None:
            return
        with admin.connect() as other:
            if dialect == 'postgresql':
                other.execute(sa.text('SELECT pg_terminate_backend(:id, 5000)'), {'id': server_id})
                return
            other.execute(sa.text(f'KILL {int(server_id)}'))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and other.execute(
                sa.text('SELECT COUNT(*) FROM information_schema.processlist WHERE id = :id'), {'id': server_id}
            ).scalar_one():
                time.sleep(0.01)

    sa.event.listen(engine, 'commit', kill_at_commit)
    runs: list[int] = []

    @bridge.action()
    def doomed(session: Session) -> None:
        runs.append(1)
        session.add(Counter(id=7, value=7))
        connection = session.connection()
        connection.info['kill_at_commit'] = connection.execute(sa.text(own_id)).scalar_one()

    @bridge.action()
    def fine(session: Session) -> None:
        session.add(Counter(id=8, value=8))

    client = Client(bridge)
    try:
        result = client.execute('doomed')
        assert result.status_code == 503, result.text
        assert result.json['code'] == 'outcome_unknown'
        assert 'Retry-After' not in result.headers  # not safe to retry blindly
        assert 'may or may not have been applied' in result.json['detail']
        assert runs == [1], 'a run whose COMMIT was sent must never run again'
        # The next run gets a fresh connection and works.
        assert client.execute('fine').status_code == 200
        with engine.connect() as connection:
            # Here the server died before it read the COMMIT, so the doomed run left nothing.
            assert connection.execute(sa.select(Counter.__table__.c.id)).scalars().all() == [8]
    finally:
        engine.dispose()
        admin.dispose()


# -- (d) action timeout: per statement, on every database -----------------------------------------

TIMEOUT = 0.5


def _sqlite_count_per_second() -> float:
    """How fast this machine's SQLite counts in a recursive CTE, to size a statement in seconds."""
    connection = sqlite3.connect(':memory:')
    started = time.perf_counter()
    connection.execute(_COUNT_TO, {'n': 300_000}).fetchone()
    connection.close()
    return 300_000 / (time.perf_counter() - started)


_COUNT_TO = 'WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < :n) SELECT count(*) FROM c'


def _long_statement(dialect: str, seconds: float) -> tuple[str, dict[str, Any]]:
    """A statement that runs about ``seconds`` on ``dialect``."""
    if dialect == 'postgresql':
        return 'SELECT pg_sleep(:seconds)', {'seconds': seconds}
    if dialect == 'mariadb':
        return 'SELECT SLEEP(:seconds)', {'seconds': seconds}
    return _COUNT_TO, {'n': int(_sqlite_count_per_second() * seconds)}


def test_action_timeout_gives_504_rolls_back_and_is_reset(dialect: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # One pooled connection: the run after the timed-out one gets the very same connection.
    engine = fresh_engine(database_url(dialect, tmp_path), pool_size=1, max_overflow=0)
    bridge = Bridge(Base, engine=engine, token=TOKEN)
    connections: list[int] = []
    statement_seconds: list[float] = []

    def run_long(session: Session, seconds: float) -> None:
        connections.append(id(session.connection().connection.driver_connection))
        sql, bind = _long_statement(dialect, seconds)
        started = time.perf_counter()
        session.execute(sa.text(sql), bind)
        statement_seconds.append(time.perf_counter() - started)

    @bridge.action(timeout=TIMEOUT)
    def bounded(session: Session) -> None:
        session.execute(sa.insert(Counter.__table__).values(id=1, value=1))
        run_long(session, 30)

    @bridge.action()
    def unbounded(session: Session) -> None:
        session.execute(sa.insert(Counter.__table__).values(id=2, value=2))
        run_long(session, TIMEOUT * 3)

    client = Client(bridge)
    try:
        started = time.perf_counter()
        result = client.execute('bounded')
        interrupted_after = time.perf_counter() - started
        assert result.status_code == 504, result.text
        assert result.json['code'] == 'timeout'
        assert 'timeout' in result.json['detail'] and 'rolled back' in result.json['detail']
        assert interrupted_after < TIMEOUT + 5, 'the statement was not interrupted'

        result = client.execute('unbounded')
        assert result.status_code == 200, result.text
        assert statement_seconds and statement_seconds[-1] > TIMEOUT * 1.5, statement_seconds
        assert connections[0] == connections[1], 'the second run must reuse the connection of the first'
        with engine.connect() as connection:
            assert connection.execute(sa.select(Counter.__table__.c.id)).scalars().all() == [2]
        report(capsys, f'timeout {dialect}: timeout={TIMEOUT}s interrupted after {interrupted_after:.2f}s -> 504, '
                       f'rolled back; next run on the same connection ran {statement_seconds[-1]:.2f}s -> 200')
    finally:
        engine.dispose()
