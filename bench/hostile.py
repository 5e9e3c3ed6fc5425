"""Hostile clients and heavy queries: what the defences cost, and what they keep.

1. Slowloris. A normal client's ``get_action_list`` latency against gunicorn
   (2 workers × 8 threads, as ``jet-sqla serve``), quiet and while 1,000 slow
   or idle connections are open (250 each: partial request line, partial
   headers, slow body, nothing at all), for jet_sqla's ``BufferingWorker`` and
   for plain ``gthread``. Each probe has a 3 s timeout, as the attack run's.
2. The read timeout. ``get_field_options`` on a foreign key (first page, and a
   search) in process, with ``query_timeout=5`` against the same bridge with
   ``query_timeout=None``, round by round (paired ratio).

Run: ``python -m bench.hostile [--postgres-url URL] [--seconds 5] [--rounds 7]``
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.payloads import BENCH_TOKEN
from bench.report import Section, median, paired_ratio
from jet_sqla import Bridge

REPO = Path(__file__).resolve().parents[1]
PER_VARIANT = 250
PROBE_TIMEOUT = 3.0
VARIANTS = {
    'partial request line': b'GET /api/hea',
    'partial headers': b'GET /api/health HTTP/1.1\r\nHost: bench\r\n',
    'slow body': b'POST /api/messages/ HTTP/1.1\r\nHost: bench\r\nContent-Length: 100000\r\n\r\n{"name":',
    'nothing at all': b'',
}


@contextlib.contextmanager
def _gunicorn(worker_class: str, database: Path, log: Path) -> Iterator[int]:
    env = dict(os.environ, BENCH_DB=str(database), BENCH_TOKEN=BENCH_TOKEN,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    command = [sys.executable, '-m', 'gunicorn', 'bench.jet_app:from_environment()', '--bind', '127.0.0.1:0',
               '--workers', '2', '--threads', '8', '--worker-class', worker_class, '--no-control-socket',
               '--graceful-timeout', '2']
    with open(log, 'wb') as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        port = 0
        while time.monotonic() < deadline and not port:
            found = re.search(r'Listening at: http://127\.0\.0\.1:(\d+)', log.read_text(errors='replace'))
            port = int(found.group(1)) if found else 0
            time.sleep(0.1)
        if not port:
            raise RuntimeError(f'gunicorn did not start:\n{log.read_text(errors="replace")[-2000:]}')
        time.sleep(1.0)  # both workers up
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _probe(port: int, seconds: float) -> tuple[list[float], int]:
    """Latencies of answered probes, and how many probes failed (timeout, reset, non-200)."""
    latencies: list[float] = []
    failed = 0
    body = json.dumps({'name': 'get_action_list'})
    headers = {'Authorization': f'Bearer {BENCH_TOKEN}', 'Content-Type': 'application/json'}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        connection = http.client.HTTPConnection('127.0.0.1', port, timeout=PROBE_TIMEOUT)
        started = time.perf_counter()
        try:
            connection.request('POST', '/api/messages/', body, headers)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1
        except OSError:
            failed += 1
        finally:
            connection.close()
    return latencies, failed


@contextlib.contextmanager
def _attack(port: int) -> Iterator[int]:
    opened: list[tuple[str, socket.socket]] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for name, sock in opened:
                if name == 'slow body':
                    with contextlib.suppress(OSError):
                        sock.send(b' ')

    try:
        for _ in range(PER_VARIANT):
            for name, first in VARIANTS.items():
                sock = socket.create_connection(('127.0.0.1', port), timeout=10)
                if first:
                    sock.sendall(first)
                opened.append((name, sock))
        threading.Thread(target=trickle, daemon=True).start()
        yield len(opened)
    finally:
        stop.set()
        for _, sock in opened:
            sock.close()


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else (values[0] if values else float('nan'))


def slowloris(seconds: float) -> Section:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or (hard == resource.RLIM_INFINITY and soft < 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    from bench.jet_app import prepare_database

    section = Section('Slowloris: a normal client while 1,000 slow or idle connections are open',
                      ['worker class', 'phase', 'answered', 'failed (3 s timeout)', 'p50', 'p99'])
    with tempfile.TemporaryDirectory(prefix='jet-sqla-hostile-') as tmp:
        database = prepare_database(Path(tmp) / 'bench.sqlite3')
        for worker_class in ('jet_sqla.workers.BufferingWorker', 'gthread'):
            with _gunicorn(worker_class, database, Path(tmp) / f'{worker_class}.log') as port:
                quiet, quiet_failed = _probe(port, seconds)
                with _attack(port) as count:
                    attacked, attacked_failed = _probe(port, seconds)
                for phase, latencies, failed in (('quiet', quiet, quiet_failed),
                                                 (f'{count} connections open', attacked, attacked_failed)):
                    section.add(worker_class, phase, len(latencies), failed,
                                f'{median(latencies) * 1000:.1f} ms' if latencies else '-',
                                f'{_p99(latencies) * 1000:.1f} ms' if latencies else '-')
                section.raw[worker_class] = {'quiet_p99': _p99(quiet), 'attacked_p99': _p99(attacked),
                                             'attacked_failed': attacked_failed}
    section.notes.append(f'{seconds:g} s of back-to-back probes per phase, each on a new connection')
    return section


class Base(DeclarativeBase):
    pass


class Label(Base):
    __tablename__ = 'hostile_labels'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))


class Ticket(Base):
    __tablename__ = 'hostile_tickets'
    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(sa.ForeignKey('hostile_labels.id'))


def read_timeout(url: str, rounds: int, requests: int = 300) -> Section:
    engine = sa.create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.insert(Label), [{'id': i, 'name': f'label {i}'} for i in range(1, 10_001)])
    clients = {timeout: testing.TestClient(Bridge(Base, engine=engine, token=BENCH_TOKEN,
                                                  query_timeout=timeout).wsgi_app())
               for timeout in (None, 5.0)}
    headers = {'Authorization': f'Bearer {BENCH_TOKEN}'}
    section = Section(f'The read timeout on {engine.dialect.name}: get_field_options with query_timeout=5 '
                      'vs None', ['case', 'without', 'with', 'ratio'])
    for case, params in (('first page', {}), ('search "777"', {'q': '777'})):
        body = {'name': 'get_field_options', 'params': {'model': 'hostile_tickets', 'field': 'label_id', **params}}
        timings: dict[float | None, list[float]] = {None: [], 5.0: []}
        for _ in range(rounds):
            for timeout, client in clients.items():
                started = time.perf_counter()
                for _ in range(requests):
                    assert client.simulate_post('/api/messages/', json=body, headers=headers).status_code == 200
                timings[timeout].append((time.perf_counter() - started) / requests)
        section.add(case, f'{median(timings[None]) * 1e6:.0f} µs', f'{median(timings[5.0]) * 1e6:.0f} µs',
                    f'{paired_ratio(timings[5.0], timings[None]):.2f}x')
    Base.metadata.drop_all(engine)
    engine.dispose()
    section.notes.append(f'{rounds} rounds of {requests} requests each, in process (falcon.testing)')
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--postgres-url', default='postgresql+psycopg://postgres@127.0.0.1:5432/test')
    parser.add_argument('--mariadb-url', default='mysql+pymysql://root@127.0.0.1:3306/test')
    parser.add_argument('--seconds', type=float, default=5.0)
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--only', default='slowloris,timeout')
    args = parser.parse_args()
    if 'slowloris' in args.only:
        print(slowloris(args.seconds).markdown() + '\n', flush=True)
    if 'timeout' in args.only:
        with tempfile.TemporaryDirectory(prefix='jet-sqla-hostile-') as tmp:
            for url in (f'sqlite:///{tmp}/timeout.sqlite3', args.postgres_url, args.mariadb_url):
                try:
                    print(read_timeout(url, args.rounds).markdown() + '\n', flush=True)
                except sa.exc.OperationalError as error:
                    print(f'(skipped {sa.make_url(url).get_backend_name()}: {type(error).__name__})\n')


if __name__ == '__main__':
    main()
