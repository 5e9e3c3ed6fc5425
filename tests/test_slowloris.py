"""Slow and idle clients against a real ``jet-sqla serve`` on loopback (slowloris).

gunicorn's gthread worker gives a thread to a connection at its first byte and
reads the headers from a blocking socket with no deadline: 16 sockets that
send half a request stop a 2 × 8 server. ``jet-sqla serve`` reads requests on
the event loop (:mod:`jet_sqla.workers`) and must go on answering while 1,000
such connections are open, then close every one of them at its deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jet_sqla import workers
from jet_sqla.cli.serving import SERVE_DEFAULTS

from .apps.cli_server import serving
from .apps.server import rss_kib
from .conftest import TOKEN, fresh_engine

#: Connections of each variant; four variants make the 1,000 of the issue.
PER_VARIANT = 250
#: How long the normal client measures while every attacking connection is open (under the 10 s deadline).
MEASURE_SECONDS = 6.0
#: The normal client's own timeout: every request must be answered within it.
CLIENT_TIMEOUT = 3.0

VARIANTS: dict[str, bytes] = {
    'partial request line': b'GET /api/hea',
    'partial headers': b'GET /api/health HTTP/1.1\r\nHost: test\r\n',
    'slow body': (b'POST /api/messages/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n'
                  b'Authorization: Bearer ' + TOKEN.encode() + b'\r\nContent-Length: 100000\r\n\r\n{"name":'),
    'nothing at all': b'',
}


def _raise_open_files_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f'this test needs {needed} open files; the hard limit is {hard}')
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@contextlib.contextmanager
def _attack(port: int) -> Iterator[dict[str, list[socket.socket]]]:
    """Open every attacking connection; the slow bodies get one more byte a second until closed."""
    opened: dict[str, list[socket.socket]] = {name: [] for name in VARIANTS}
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in opened['slow body']:
                with contextlib.suppress(OSError):
                    sock.send(b' ')

    try:
        for _ in range(PER_VARIANT):
            for name, first_bytes in VARIANTS.items():
                sock = socket.create_connection(('127.0.0.1', port), timeout=10)
                if first_bytes:
                    sock.sendall(first_bytes)
                opened[name].append(sock)
        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        yield opened
    finally:
        stop.set()
        for sockets in opened.values():
            for sock in sockets:
                sock.close()


def _get_action_list(port: int, new_connection: http.client.HTTPConnection | None) -> tuple[int, float]:
    connection = new_connection or http.client.HTTPConnection('127.0.0.1', port, timeout=CLIENT_TIMEOUT)
    started = time.perf_counter()
    try:
        connection.request('POST', '/api/messages/', json.dumps({'name': 'get_action_list'}),
                           {'Authorization': f'Bearer {TOKEN}', 'Content-Type': 'application/json'})
        response = connection.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    finally:
        if new_connection is None:
            connection.close()


def _answer_when_closed(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before it closed the connection, or ``None`` if it is still open at ``deadline``."""
    received = b''
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def test_the_defaults_are_a_ten_second_header_deadline_and_a_body_stall_deadline() -> None:
    assert workers.BufferingWorker.header_timeout == 10.0
    assert workers.BufferingWorker.body_timeout == 10.0


def test_a_thousand_slow_or_idle_connections_never_keep_a_normal_client_waiting(tmp_path: Path) -> None:
    total = PER_VARIANT * len(VARIANTS)
    _raise_open_files_limit(total + 1024)
    url = f'sqlite:///{tmp_path / "slow.db"}'
    fresh_engine(url).dispose()
    args = ['serve', 'tests.apps.cli_apps:plain', '--bind', '127.0.0.1:0']  # every other setting: the defaults
    with serving(args, log_path=tmp_path / 'server.log', token=TOKEN,
                 env={'JET_SQLA_DATABASE_URL': url, 'JET_SQLA_TOKEN': TOKEN}) as server:
        pids = server.wait_for_workers(SERVE_DEFAULTS.workers)
        rss_before = {pid: rss_kib(pid) for pid in pids}
        with _attack(server.port) as opened:
            attacked_at = time.monotonic()
            statuses: list[int] = []
            seconds: list[float] = []
            kept = http.client.HTTPConnection('127.0.0.1', server.port, timeout=CLIENT_TIMEOUT)
            # Half the requests reuse a kept-alive connection, half open a new one through the crowd.
            while time.monotonic() - attacked_at < MEASURE_SECONDS:
                status, elapsed = _get_action_list(server.port, kept if len(statuses) % 2 else None)
                statuses.append(status)
                seconds.append(elapsed)
            kept.close()
            rss_during = {pid: rss_kib(pid) for pid in pids}
            still_open = sum(1 for sockets in opened.values() for sock in sockets if sock.fileno() >= 0)
            assert still_open == total

            # Every request was answered within the client's timeout (an exception would have failed the test).
            assert set(statuses) == {200}, statuses
            p99 = statistics.quantiles(seconds, n=100)[98] * 1000 if len(seconds) >= 2 else seconds[0] * 1000
            print(f'\n[reliability] slowloris: {total} connections open ({PER_VARIANT} of each of '
                  f'{len(VARIANTS)} variants); {len(seconds)} get_action_list answered, all 200, '
                  f'p50 {statistics.median(seconds) * 1000:.1f} ms, p99 {p99:.1f} ms, '
                  f'max {max(seconds) * 1000:.1f} ms')

            # Every attacking connection is closed at its deadline: 10 s for headers, and as long
            # for a body plus 1 s per 500 bytes received (a trickle of 1 byte a second).
            deadline = attacked_at + workers.BufferingWorker.header_timeout + 8
            answers = {name: [_answer_when_closed(sock, deadline) for sock in sockets]
                       for name, sockets in opened.items()}
            closed_after = time.monotonic() - attacked_at
        for name, received in answers.items():
            assert all(answer is not None for answer in received), \
                f'{name}: {sum(a is None for a in received)} connections still open after {closed_after:.1f} s'
        for name in ('partial request line', 'partial headers', 'slow body'):
            assert all(answer is not None and answer.startswith(b'HTTP/1.1 408 ') and b'application/json' in answer
                       for answer in answers[name]), (name, answers[name][:3])
        assert all(answer == b'' for answer in answers['nothing at all'])

        grown = {pid: (rss_during[pid] - rss_before[pid]) / 1024 for pid in pids}
        print(f'[reliability] slowloris: every connection closed by {closed_after:.1f} s; worker RSS growth '
              + ', '.join(f'{value:.1f} MiB' for value in grown.values()))
        # A connection being read costs kilobytes: far below one body buffer budget per worker.
        assert all(value < workers.BufferingWorker.buffer_budget / 2**20 for value in grown.values()), grown
        # Service goes on after the attack.
        assert _get_action_list(server.port, None)[0] == 200
