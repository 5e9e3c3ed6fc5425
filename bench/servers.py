"""Start, probe and stop loopback server processes (gunicorn, the reference bridge)."""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from bench.payloads import BENCH_TOKEN, MESSAGES_PATH

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port that is free on loopback right now, below the kernel's ephemeral range where it can.

    A port from ``bind(port 0)`` comes from the ephemeral range, where the kernel also picks the local port
    of every outgoing connection: between this call and the server's own bind, a connection to a database
    or a broker may take it, and the server fails with "Address already in use" (seen once in the bench
    smoke tests). Below that range no port is taken unasked.
    """
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randrange(_LOWEST_PORT, low) if low - _LOWEST_PORT >= 1000 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue  # in use: another one
            return int(sock.getsockname()[1])
    raise RuntimeError("no free loopback port found")


#: The lowest port free_port() offers: above the registered services most machines run.
_LOWEST_PORT = 20000


def _ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    """The first port of the kernel's ephemeral range (Linux); elsewhere the IANA range's, 49152."""
    try:
        with open(path, encoding="ascii") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def group_processes(pgid: int) -> list[list[str]]:
    """The /proc/<pid>/stat fields (after the command name) of every process in group ``pgid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # the command name (field 2) may hold spaces: split after its closing parenthesis
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[2]) == pgid:  # pgrp
            found.append(fields)
    return found


@dataclass
class ServerProcess:
    """A server started in its own process group; ``stop()`` ends the whole group."""

    proc: "subprocess.Popen[bytes]"
    port: int
    log_path: Path
    name: str = "server"
    work_dir: Optional[Path] = None
    """A scratch directory of the server's own, removed by ``stop()``."""
    _stopped: bool = field(default=False, repr=False)

    def url(self, path: str = MESSAGES_PATH) -> str:
        """Absolute loopback URL of ``path`` on this server."""
        return "http://{}:{}{}".format(HOST, self.port, path)

    def log_text(self) -> str:
        """The server's combined stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        """Last ``lines`` lines of the server's log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the live processes of this server's group.

        Throughput on a shared machine moves with everybody else's load; the CPU a
        server spends per request hardly does, so it is the steadier measure.
        """
        ticks = sum(int(fields[11]) + int(fields[12]) for fields in group_processes(self.proc.pid))  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``timeout`` s, then SIGKILL what is left."""
        if self._stopped:
            return
        self._stopped = True
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()
            if not self._group_alive():
                break
            time.sleep(0.05)
        else:
            self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


ReadyCheck = Callable[[ServerProcess], bool]


def answers_http(server: ServerProcess) -> bool:
    """True when ``server`` answers HTTP on its messages URL (any status counts)."""
    try:
        with urllib.request.urlopen(server.url(), timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, with an error status: that is enough
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(
    server: ServerProcess, timeout: float, all_workers_ready: Optional[ReadyCheck] = None
) -> None:
    """Wait until ``server`` answers HTTP and ``all_workers_ready(server)`` (if given) holds.

    Raises RuntimeError (with the log tail) if it exits or is not ready in ``timeout`` s.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                "{} exited with {} before answering:\n{}".format(
                    server.name, server.proc.returncode, server.log_tail()
                )
            )
        if answers_http(server) and (all_workers_ready is None or all_workers_ready(server)):
            return
        time.sleep(0.1)
    raise RuntimeError(
        "{} did not answer on port {} within {:.0f}s:\n{}".format(
            server.name, server.port, timeout, server.log_tail()
        )
    )


def start_server(
    argv: Sequence[str],
    port: int,
    log_path: Path,
    *,
    name: str,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[Path] = None,
    startup_timeout: float = 30.0,
    all_workers_ready: Optional[ReadyCheck] = None,
) -> ServerProcess:
    """Run ``argv`` in a new process group, logging to ``log_path``; return once it is ready
    (see ``wait_until_ready``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    server = ServerProcess(proc=proc, port=port, log_path=log_path, name=name)
    try:
        wait_until_ready(server, startup_timeout, all_workers_ready)
    except BaseException:
        server.stop()
        raise
    return server


def start_gunicorn(
    app: str,
    *,
    workers: int = 2,
    worker_class: str = "sync",
    threads: int = 1,
    port: Optional[int] = None,
    python: str = sys.executable,
    env: Optional[Mapping[str, str]] = None,
    extra_args: Sequence[str] = (),
    extra_paths: Sequence[str] = (),
    log_path: Optional[Path] = None,
    startup_timeout: float = 30.0,
) -> ServerProcess:
    """Serve the WSGI ``app`` ("module:attr") with ``python -m gunicorn`` on loopback.

    Returns once every worker has loaded the app. ``env`` is added to the current
    environment; ``extra_paths`` then the repository root are put on PYTHONPATH (so a
    candidate copy of a package in ``extra_paths`` wins). The gunicorn config slot
    (``-c``) is taken by bench.gunicorn_ready: pass other settings in ``extra_args``.
    """
    port = port or free_port()
    repo_root = str(Path(__file__).resolve().parent.parent)
    ready_dir = Path(tempfile.mkdtemp(prefix="bench-gunicorn-ready-"))
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (*extra_paths, repo_root, full_env.get("PYTHONPATH", "")) if p
    )
    full_env.update(env or {})
    full_env["BENCH_READY_DIR"] = str(ready_dir)
    argv = [
        python, "-m", "gunicorn",
        "--config", "python:bench.gunicorn_ready",
        "--bind", "{}:{}".format(HOST, port),
        "--workers", str(workers),
        "--worker-class", worker_class,
        "--threads", str(threads),
        "--log-level", "warning",
        *extra_args,
        app,
    ]
    # By default the log lives in the server's scratch directory, removed by stop():
    # errors raised on the way carry its tail.
    log = log_path or ready_dir / "gunicorn.log"
    try:
        server = start_server(
            argv, port, log, name="gunicorn " + app, env=full_env, startup_timeout=startup_timeout,
            # gunicorn puts its working directory first on sys.path: an empty one
            # leaves the order of PYTHONPATH (candidate copies first) intact
            cwd=ready_dir,
            all_workers_ready=lambda _: len(list(ready_dir.glob("[0-9]*"))) >= workers,
        )
    except BaseException:
        shutil.rmtree(ready_dir, ignore_errors=True)
        raise
    server.work_dir = ready_dir
    return server


def _group_size(server: ServerProcess) -> int:
    """How many live (not zombie) processes are in the server's process group."""
    return sum(1 for fields in group_processes(server.proc.pid) if fields[0] != "Z")


def start_jet_sqla_serve(stack: Any, env: Optional[Mapping[str, str]] = None,
                         startup_timeout: float = 60.0) -> ServerProcess:
    """Serve the benchmark app with ``jet-sqla serve`` and its defaults (log format and level).

    Only the worker class, workers and threads are set, to match the server it is compared with;
    with ``stack.access_log``, ``--access-log`` too. Ready once the master and every worker run
    and it answers HTTP.
    """
    port = free_port()
    repo_root = str(Path(__file__).resolve().parent.parent)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-jet-sqla-serve-"))
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (stack.jet_sqla_path, repo_root, full_env.get("PYTHONPATH", "")) if p
    )
    full_env.update(env or {})
    full_env["JET_SQLA_JSON"] = stack.json
    full_env.setdefault("JET_SQLA_TOKEN", full_env.get("BENCH_TOKEN", BENCH_TOKEN))
    argv = [
        sys.executable, "-m", "jet_sqla.cli", "serve", "bench.jet_app:from_environment",
        "--bind", "{}:{}".format(HOST, port),
        "--workers", str(stack.workers),
        "--threads", str(stack.threads),
        "--worker-class", stack.worker_class,
        *(["--access-log"] if stack.access_log else []),
    ]
    try:
        server = start_server(
            argv, port, work_dir / "serve.log", name="jet-sqla serve", env=full_env, cwd=work_dir,
            startup_timeout=startup_timeout,
            all_workers_ready=lambda started: _group_size(started) >= stack.workers + 1,
        )
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    server.work_dir = work_dir
    return server
