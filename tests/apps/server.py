"""gunicorn as a real process for the tests, and a small client that speaks the messages protocol to it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 30


class Reply:
    """One HTTP answer: its status and decoded JSON body (``None`` when it was not JSON)."""

    __slots__ = ('status', 'body', 'content_type', 'seconds')

    def __init__(self, status: int, body: Any, content_type: str, seconds: float) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.seconds = seconds

    def __repr__(self) -> str:
        return f'<Reply {self.status} {self.body!r:.200}>'


class MessageClient:
    """A keep-alive HTTP/1.1 connection that posts Jet messages; one per thread."""

    def __init__(self, host: str, port: int, token: str, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.headers = {'Authorization': f'Bearer {token}', 'Content-Type': 'application/json'}
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def message(self, name: str, params: Mapping[str, Any] | None = None) -> Reply:
        """POST one message; connection failures propagate (the caller counts them)."""
        body = json.dumps({'name': name, 'params': dict(params or {})})
        return self.request('POST', '/api/messages/', body)

    def execute(self, action: str, model: str | None = None, **form: Any) -> Reply:
        params: dict[str, Any] = {'name': action, 'params': form}
        if model is not None:
            params['model'] = model
        return self.message('execute_action', params)

    def request(self, method: str, path: str, body: str | None = None) -> Reply:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        started = time.perf_counter()
        try:
            self._connection.request(method, path, body=body, headers=self.headers)
            response = self._connection.getresponse()
            raw = response.read()
        except BaseException:
            self.close()  # the next request opens a fresh connection
            raise
        content_type = response.getheader('Content-Type') or ''
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        if response.will_close:
            self.close()
        return Reply(response.status, decoded, content_type, time.perf_counter() - started)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Gunicorn:
    """A gunicorn master started as a real process; see :func:`gunicorn`."""

    #: How :meth:`stop` asks the master to stop, before it forces it.
    stop_signal = signal.SIGTERM

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, token: str) -> None:
        self.process = process
        self.log_path = log_path
        self.token = token
        self.host = '127.0.0.1'
        self.port = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, size: int = 4000) -> str:
        return self.log_path.read_text(errors='replace')[-size:]

    def client(self, timeout: float = 30.0) -> MessageClient:
        return MessageClient(self.host, self.port, self.token, timeout)

    def worker_pids(self) -> list[int]:
        """The pids of the master's live children, from /proc."""
        found = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f'/proc/{entry}/stat').read_text()
            except OSError:
                continue
            # The command name may hold spaces or parentheses: split after its closing one.
            fields = stat[stat.rindex(')') + 2:].split()
            if int(fields[1]) == self.pid and fields[0] != 'Z':
                found.append(int(entry))
        return sorted(found)

    def wait_for_workers(self, count: int, *, excluding: Collection[int] = (),
                         seconds: float = STARTUP_SECONDS) -> list[int]:
        """Wait until ``count`` workers run, none of them in ``excluding``; returns their pids."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) == count and not set(pids) & set(excluding):
                return pids
            time.sleep(0.05)
        raise AssertionError(f'gunicorn did not get to {count} workers: {self.worker_pids()}\n{self.log_tail()}')

    def health(self) -> int | None:
        """The status of ``GET /api/health``, or ``None`` when nothing answers."""
        try:
            with socket.create_connection((self.host, self.port), timeout=5) as sock:
                sock.sendall(b'GET /api/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n')
                first = sock.recv(64).split(b'\r\n', 1)[0]
        except OSError:
            return None
        found = re.match(rb'HTTP/1\.[01] (\d{3})', first)
        return int(found.group(1)) if found else None

    def wait_until_healthy(self, seconds: float = STARTUP_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.port == 0:
                found = re.search(r'Listening at: http://127\.0\.0\.1:(\d+)', self.log_path.read_text(errors='replace'))
                self.port = int(found.group(1)) if found else 0
            if self.port and self.health() == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f'gunicorn did not become healthy (exit code {self.process.poll()}):\n{self.log_tail()}')

    def stop(self) -> None:
        """Stop the master and its workers, by their ids; forcefully if they linger."""
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        # The process group holds only what this gunicorn started (it has a session of its own).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


@contextlib.contextmanager
def gunicorn(
    app: str,
    *,
    database_url: str,
    token: str,
    log_path: Path,
    workers: int = 4,
    threads: int = 2,
    env: Mapping[str, str] | None = None,
    worker_class: str = 'gthread',
) -> Iterator[Gunicorn]:
    """Serve ``app`` (as ``'tests.apps.wallets:create_app()'``) on a free loopback port; always stopped on exit.

    Raises:
        AssertionError: the server did not answer its health check in time (the log is in the message).
    """
    environment = dict(os.environ, JET_SQLA_DATABASE_URL=database_url, JET_SQLA_TOKEN=token,
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')])))
    environment.pop('JET_SQLA_INSECURE', None)
    environment.update(env or {})
    # Port 0: the kernel picks a free port and gunicorn logs it, so no other run can race us for it.
    # No control socket: its default path is shared by every gunicorn of the machine.
    command = [sys.executable, '-m', 'gunicorn', app, '--bind', '127.0.0.1:0', '--workers', str(workers),
               '--worker-class', worker_class, '--threads', str(threads), '--no-control-socket',
               '--graceful-timeout', '3', '--timeout', '60']
    with open(log_path, 'ab') as log:
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Gunicorn(process, log_path, token)
    try:
        server.wait_until_healthy()
        server.wait_for_workers(workers)
        yield server
    finally:
        server.stop()


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc/<pid>/status."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise ValueError(f'no VmRSS for pid {pid}')
