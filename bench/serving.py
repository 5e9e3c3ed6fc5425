"""Server stacks (gunicorn worker class, HTTP parser, JSON library) and alternating wrk runs.

Every HTTP benchmark starts its servers side by side and loads them in turns:
round after round, each (server, message) cell gets one wrk run, and the order
of the servers rotates from round to round. Ratios are taken within a round.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.load import WrkResult, run_wrk
from bench.payloads import request_body, request_headers
from bench.report import median, paired_ratio
from bench.servers import ServerProcess, start_gunicorn, start_jet_sqla_serve

BENCH_DIR = Path(__file__).resolve().parent
#: gunicorn's C parser is installed here, not in the project's virtualenv, so
#: that gunicorn's ``http_parser=auto`` does not switch to it for anyone else.
H1C_DIR = BENCH_DIR / '.cache' / 'h1c'
H1C_REQUIREMENT = 'gunicorn-h1c==0.6.9'

BARE_APP = 'bench.bare_app:app'
JET_APP = 'bench.jet_app:from_environment()'


@dataclass(frozen=True)
class Stack:
    """How gunicorn serves an app.

    Attributes:
        worker_class: ``sync`` or ``gthread``.
        threads: Threads per gthread worker.
        workers: Worker processes.
        parser: ``python`` (gunicorn's own) or ``fast`` (the gunicorn_h1c C parser).
        json: ``orjson`` or ``stdlib`` (jet_sqla's ``JET_SQLA_JSON``; the bare app always uses stdlib).
        gc_freeze: Each worker calls ``gc.freeze()`` once its app is loaded.
        jet_sqla_path: A directory holding a candidate copy of the ``jet_sqla`` package to
            serve instead of the repository's (to measure a change side by side).
    """

    worker_class: str = 'gthread'
    threads: int = 4
    workers: int = 2
    parser: str = 'python'
    json: str = 'orjson'
    gc_freeze: bool = False
    jet_sqla_path: str | None = None
    serve_command: bool = False
    access_log: bool = False

    @property
    def label(self) -> str:
        workers = f'{self.workers}w' + (f'x{self.threads}t' if self.worker_class != 'sync' else '')
        freeze = ', gc.freeze()' if self.gc_freeze else ''
        return f'{self.worker_class} {workers}, {self.parser} parser, {self.json}{freeze}'

    def gunicorn_args(self) -> list[str]:
        return ['--http-parser', self.parser]


SYNC = Stack(worker_class='sync', threads=1)
GTHREAD = Stack()
#: The stack of the protocol, reference and starvation benchmarks (``--workers``
#: and ``--threads`` adjust it): threaded workers, the kind BENCHMARKS.md recommends.
RECOMMENDED = GTHREAD


def h1c_path() -> str | None:
    """The directory holding gunicorn_h1c, installing it there from PyPI on first use; None if it fails."""
    if (H1C_DIR / 'gunicorn_h1c').is_dir():
        return str(H1C_DIR)
    H1C_DIR.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--quiet', '--no-deps', '--target', str(H1C_DIR), H1C_REQUIREMENT],
        capture_output=True, text=True, timeout=300, check=False,
    )
    return str(H1C_DIR) if done.returncode == 0 and (H1C_DIR / 'gunicorn_h1c').is_dir() else None


def start_app(app: str, stack: Stack, env: Mapping[str, str] | None = None) -> ServerProcess:
    """Serve ``app`` (BARE_APP or JET_APP) with ``stack``.

    Raises:
        RuntimeError: the C parser is asked for but cannot be installed, or the server does not start.
    """
    if stack.serve_command:
        return start_jet_sqla_serve(stack, env)
    extra_paths = [stack.jet_sqla_path] if stack.jet_sqla_path else []
    if stack.parser == 'fast':
        path = h1c_path()
        if path is None:
            raise RuntimeError(f'{H1C_REQUIREMENT} does not install from PyPI here')
        extra_paths.append(path)
    return start_gunicorn(
        app,
        workers=stack.workers,
        worker_class=stack.worker_class,
        threads=stack.threads,
        env={**(env or {}), 'JET_SQLA_JSON': stack.json, 'BENCH_GC_FREEZE': '1' if stack.gc_freeze else '0'},
        extra_args=stack.gunicorn_args(),
        extra_paths=extra_paths,
    )


ServerSpec = tuple[str, Stack, Mapping[str, str]]
"""What to serve: (app, stack, extra environment)."""


class ServerPool:
    """Servers shared by the benchmarks of one run: each is started once, when first asked for.

    Servers asked for together start in parallel. ``close()`` stops them all.
    """

    def __init__(self) -> None:
        self._servers: dict[Hashable, ServerProcess] = {}

    def get(self, specs: Mapping[str, ServerSpec]) -> dict[str, ServerProcess]:
        """The server of every ``label: (app, stack, env)``, starting those not running yet.

        Raises:
            RuntimeError: a server does not start (those that did are kept, for close()).
        """
        keys = {label: (app, stack, tuple(sorted(env.items()))) for label, (app, stack, env) in specs.items()}
        self._start_missing({key: partial(start_app, *specs[label]) for label, key in keys.items()})
        return {label: self._servers[key] for label, key in keys.items()}

    def external(self, key: Hashable, start: Callable[[], ServerProcess]) -> ServerProcess:
        """A server started by ``start()`` (such as the reference), kept under ``key``."""
        self._start_missing({key: start})
        return self._servers[key]

    def _start_missing(self, starters: Mapping[Hashable, Callable[[], ServerProcess]]) -> None:
        pending = {key: start for key, start in starters.items() if key not in self._servers}
        if not pending:
            return
        # PERF: most of a start is importing the app; on 2 cores two imports overlap well enough.
        with ThreadPoolExecutor(max_workers=len(pending)) as executor:
            futures = {key: executor.submit(start) for key, start in pending.items()}
        failures = []
        for key, future in futures.items():
            try:
                self._servers[key] = future.result()
            except Exception as error:  # noqa: BLE001 - the first is raised once all are accounted for
                failures.append(error)
        if failures:
            raise failures[0]

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()

    def __enter__(self) -> ServerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def post(server: ServerProcess, message: str, count: int = 1) -> bytes:
    """POST the benchmark request for ``message`` ``count`` times; the last body.

    Raises:
        RuntimeError: an answer other than 200 with a body.
    """
    body = b''
    for _ in range(count):
        request = urllib.request.Request(
            server.url(), data=request_body(message), headers=request_headers(), method='POST'
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            if response.status != 200 or not body:
                raise RuntimeError(f'{server.name}: {message} got {response.status} / empty body')
    return body


@dataclass(frozen=True)
class LoadSettings:
    """wrk settings shared by every run of a comparison."""

    duration_s: float = 3.0
    connections: int = 10
    threads: int = 2
    rounds: int = 3


@dataclass(frozen=True)
class Run:
    """One wrk run, and the CPU time the server's processes spent during it."""

    wrk: WrkResult
    server_cpu_s: float

    @property
    def rps(self) -> float:
        return self.wrk.rps

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / self.wrk.requests * 1e6 if self.wrk.requests else float('nan')


Cells = dict[tuple[str, str], list[Run]]


def measure(server: ServerProcess, message: str, load: LoadSettings) -> Run:
    """One wrk run of ``message`` against ``server``.

    Raises:
        RuntimeError: the run saw errors or non-2xx answers.
    """
    cpu_before = server.cpu_seconds()
    result = run_wrk(server.url(), request_body(message), request_headers(),
                     duration_s=load.duration_s, connections=load.connections, threads=load.threads)
    cpu = server.cpu_seconds() - cpu_before
    if not result.ok:
        raise RuntimeError(f'{server.name} / {message}: wrk errors {result.errors}\n{server.log_tail()}')
    return Run(result, cpu)


def alternate(
    servers: Mapping[str, ServerProcess], messages: Sequence[str], load: LoadSettings, *, warmup: int = 50
) -> Cells:
    """wrk runs for every (server label, message), ``load.rounds`` each, in rotating turns.

    Raises:
        RuntimeError: a run saw errors or non-2xx answers.
    """
    labels = list(servers)
    for label in labels:
        for message in messages:
            post(servers[label], message, warmup)  # fills per-process caches before timing
    cells: Cells = {(label, message): [] for label in labels for message in messages}
    for round_index in range(load.rounds):
        shift = round_index % len(labels)
        order = labels[shift:] + labels[:shift]
        for message in messages:
            for label in order:
                cells[(label, message)].append(measure(servers[label], message, load))
    return cells


@dataclass(frozen=True)
class Summary:
    """Medians over the rounds of one cell."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    runs: int

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Summary:
        return cls(
            rps=median([r.rps for r in runs]),
            p50_ms=median([r.wrk.p50_ms for r in runs]),
            p99_ms=median([r.wrk.p99_ms for r in runs]),
            cpu_us=median([r.cpu_us_per_request for r in runs]),
            runs=len(runs),
        )

    def cells(self) -> tuple[float, str, str, str]:
        """req/s, p50, p99 and server CPU per request, as table cells."""
        return self.rps, f'{self.p50_ms:.2f} ms', f'{self.p99_ms:.2f} ms', f'{self.cpu_us:.0f} µs'


def cpu_ratio(cells: Cells, subject: tuple[str, str], baseline: tuple[str, str]) -> float:
    """Median over rounds of baseline CPU per request / subject CPU per request (> 1: subject is leaner)."""
    return paired_ratio([r.cpu_us_per_request for r in cells[baseline]],
                        [r.cpu_us_per_request for r in cells[subject]])


def rps_ratio(cells: Cells, subject: tuple[str, str], baseline: tuple[str, str]) -> float:
    """Median over rounds of subject req/s / baseline req/s (both measured in the same round)."""
    return paired_ratio([r.rps for r in cells[subject]], [r.rps for r in cells[baseline]])


def raw_cells(cells: Cells) -> dict[str, list[dict[str, float]]]:
    """Every wrk run, for the JSON dump."""
    return {
        f'{label} / {message}': [{'rps': r.rps, 'p50_ms': r.wrk.p50_ms, 'p99_ms': r.wrk.p99_ms,
                                  'requests': r.wrk.requests, 'server_cpu_s': r.server_cpu_s} for r in results]
        for (label, message), results in cells.items()
    }
