"""5. Starvation: get_action_list latency while 2 slow actions (1 s each) run back to back.

Two client threads keep one slow action each in flight for the whole wrk run.
The same server is also measured with no slow action, in the same round, to
show what the slow actions cost. The recommended gthread stack must keep p99
under 50 ms; sync workers are shown for contrast: each slow action holds a
whole worker process.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.jet_app import SLOW_ACTION
from bench.load import WrkResult, run_wrk
from bench.payloads import EXECUTE_ACTION, GET_ACTION_LIST, dumps, request_body, request_headers
from bench.report import Check, Section, median
from bench.serving import JET_APP, SYNC, LoadSettings, ServerPool, Stack, post
from bench.servers import ServerProcess

TARGET_P99_MS = 50.0
SLOW_CLIENTS = 2


class SlowActions:
    """``SLOW_CLIENTS`` threads, each running the slow action again as soon as it returns."""

    def __init__(self, server: ServerProcess, seconds: float) -> None:
        self.url = server.url()
        self.body = dumps({'name': EXECUTE_ACTION, 'params': {'name': SLOW_ACTION, 'params': {}}})
        self.timeout = seconds + 30
        self.max_runs = int(600 / max(seconds, 0.01))  # bounded even if stop() is never reached
        self.completed = 0
        self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(SLOW_CLIENTS)]

    def _loop(self) -> None:
        for _ in range(self.max_runs):
            if self._stop.is_set():
                return
            request = urllib.request.Request(self.url, data=self.body, headers=request_headers(), method='POST')
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    ok = response.status == 200
                    response.read()
            except (urllib.error.URLError, OSError):
                ok = False
            with self._lock:
                self.completed += ok
                self.failed += not ok

    def __enter__(self) -> SlowActions:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout)


def run(pool: ServerPool, database: Path, load: LoadSettings, stack: Stack, *, slow_seconds: float,
        connections: int) -> Section:
    """Measure get_action_list with and without slow actions, on ``stack`` and on sync workers."""
    sync = dataclasses.replace(SYNC, workers=stack.workers, parser=stack.parser, json=stack.json)
    stacks = {f'{stack.worker_class} (recommended)': stack, 'sync (contrast)': sync}
    env = {'BENCH_DB': str(database), 'BENCH_SLOW_SECONDS': repr(slow_seconds)}
    idle: dict[str, list[WrkResult]] = {label: [] for label in stacks}
    busy: dict[str, list[WrkResult]] = {label: [] for label in stacks}
    slow_runs: dict[str, list[int]] = {label: [] for label in stacks}
    duration = max(load.duration_s, 2 * slow_seconds)  # several slow runs fit in each measurement
    servers = pool.get({label: (JET_APP, server_stack, env) for label, server_stack in stacks.items()})
    for label, server in servers.items():
        post(server, GET_ACTION_LIST, 50)
        for _ in range(load.rounds):
            idle[label].append(_wrk(server, duration, connections))
            with SlowActions(server, slow_seconds) as slow:
                time.sleep(min(0.2, slow_seconds / 2))  # both slow actions are in flight
                busy[label].append(_wrk(server, duration, connections))
            slow_runs[label].append(slow.completed)
            if slow.failed:
                raise RuntimeError(f'{label}: {slow.failed} slow actions failed\n{server.log_tail()}')
    result = Section(
        f'Starvation: get_action_list while {SLOW_CLIENTS} slow actions ({slow_seconds:g} s each) run',
        ['stack', 'slow actions', 'req/s', 'p50', 'p99', 'max', 'timeouts', 'slow actions done'],
    )
    for label in stacks:
        for state, runs in (('none', idle[label]), (f'{SLOW_CLIENTS} in flight', busy[label])):
            result.add(label, state, median([r.rps for r in runs]), f'{median([r.p50_ms for r in runs]):.2f} ms',
                       f'{median([r.p99_ms for r in runs]):.2f} ms', f'{max(r.max_ms for r in runs):.0f} ms',
                       sum(r.errors.get('timeout', 0) for r in runs),
                       '' if state == 'none' else f'{sum(slow_runs[label])}')
    recommended = next(iter(stacks))
    result.checks.append(Check(f'{recommended}: get_action_list p99 with slow actions in flight',
                               median([r.p99_ms for r in busy[recommended]]), '<', TARGET_P99_MS, ' ms'))
    result.notes.append(f'{stacks[recommended].label} vs {sync.label}; wrk -c{connections} -t1, {duration:g} s per run, '
                        f'{load.rounds} rounds (idle, then busy), medians; wrk gives up on a request after 2 s')
    result.raw = {f'{label} / {state}': [dataclasses.asdict(r) for r in runs]
                  for label in stacks for state, runs in (('idle', idle[label]), ('busy', busy[label]))}
    return result


def _wrk(server: ServerProcess, duration: float, connections: int) -> WrkResult:
    # Timeouts are the finding here (sync workers), not an error: keep them in the result.
    return run_wrk(server.url(), request_body(GET_ACTION_LIST), request_headers(),
                   duration_s=duration, connections=connections, threads=1)
