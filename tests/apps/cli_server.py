"""``jet-sqla`` as a real process: one-shot commands, and servers that are always stopped."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.servers import free_port  # loopback ports below the ephemeral range: see there

from .server import Gunicorn

REPO = Path(__file__).resolve().parents[2]
#: The console script of the venv running the tests.
JET_SQLA = str(Path(sys.executable).with_name('jet-sqla'))
COMMAND_SECONDS = 60
STARTUP_SECONDS = 30


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment, without the jet_sqla settings it may carry, plus ``env``."""
    base = {key: value for key, value in os.environ.items() if not key.startswith('JET_SQLA_')}
    base['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))
    base.update(env or {})
    return base


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = REPO,
        seconds: float = COMMAND_SECONDS) -> subprocess.CompletedProcess[str]:
    """Run ``jet-sqla ARGS`` to completion (bounded), capturing stdout and stderr apart."""
    return subprocess.run([JET_SQLA, *args], cwd=cwd, env=environment(env), capture_output=True, text=True,
                          timeout=seconds, check=False, stdin=subprocess.DEVNULL)


class Server(Gunicorn):
    """A running ``jet-sqla`` server process: gunicorn's master, started by the command."""

    stop_signal = signal.SIGINT  # gunicorn's quick shutdown

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, token: str, port: int) -> None:
        super().__init__(process, log_path, token)
        self.port = port

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def log_once(self, done: str | Callable[[str], bool], timeout: float = 15.0) -> str:
        """The log once it holds ``done`` (a string, or a test of the whole text), or after ``timeout``.

        Lines at INFO reach the log within the writer's interval (0.1 s), not at once; WARNING and
        above do at once. On timeout the log is returned as it is, for the test's assert to show.
        """
        holds = (lambda text: done in text) if isinstance(done, str) else done
        deadline = time.monotonic() + timeout
        text = self.log()
        while not holds(text) and time.monotonic() < deadline:
            time.sleep(0.05)
            text = self.log()
        return text

    def request(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None,
                seconds: float = 30) -> tuple[int, Any]:
        """One request on a new connection: (status, decoded JSON body or None)."""
        connection = http.client.HTTPConnection('127.0.0.1', self.port, timeout=seconds)
        try:
            payload = json.dumps(body) if body is not None else None
            sent = {'Content-Type': 'application/json', **(headers or {})}
            connection.request(method, path, payload, sent)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None

    def message(self, name: str, params: Any = None, token: str | None = None) -> tuple[int, Any]:
        """POST a Jet message with ``Bearer <token>`` (the server's own by default)."""
        body: dict[str, Any] = {'name': name}
        if params is not None:
            body['params'] = params
        credential = self.token if token is None else token
        return self.request('POST', '/api/messages/', body, {'Authorization': f'Bearer {credential}'})


@contextlib.contextmanager
def serving(args: Sequence[str], *, log_path: Path, token: str = '', env: Mapping[str, str] | None = None,
            cwd: Path = REPO, stdout_path: Path | None = None) -> Iterator[Server]:
    """Start ``jet-sqla ARGS``, wait until ``/api/health`` answers 200, and stop it on exit, always.

    Bind ``127.0.0.1:0`` (the port is read from the log) or a port from :func:`free_port`.
    stderr (the structured log) goes to ``log_path``; stdout to ``stdout_path``, or to the log too.
    """
    arguments = list(args)
    bind = arguments[arguments.index('--bind') + 1] if '--bind' in arguments else ''
    port = int(bind.rpartition(':')[2]) if bind else 0
    with contextlib.ExitStack() as files:
        log = files.enter_context(open(log_path, 'ab'))
        out = files.enter_context(open(stdout_path, 'ab')) if stdout_path is not None else log
        process = subprocess.Popen([JET_SQLA, *arguments], cwd=cwd, env=environment(env), stdout=out, stderr=log,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(process, log_path, token, port)
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()
