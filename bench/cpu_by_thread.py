"""Where a served request's CPU goes: one worker, CPU time per request of each of its threads.

``python -m bench.cpu_by_thread [--threads N] [--rounds R] [--candidate DIR]``

Serves the trivial ``execute_action`` (or ``--message get_action_list``) with one gunicorn worker, in alternating
rounds: the bare Falcon endpoint, jet_sqla under plain gunicorn (warning level,
no line), ``jet-sqla serve`` with its defaults (one ``action ran`` line per
run), and ``jet-sqla serve --log-level warning`` (no line), plus each
``DIR/jet_sqla`` served the default way when given. For each it
reads the worker's threads' CPU time from ``/proc`` around a wrk run, so that
the request threads, gunicorn's event loop and jet_sqla's log writer are seen
apart. Linux only. Medians over the rounds.

The protocol benchmark's req/s ratio says whether jet_sqla is at the limit;
this says what the rest costs, and in which thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.jet_app import prepare_database
from bench.load import run_wrk
from bench.payloads import EXECUTE_ACTION, MESSAGE_NAMES, request_body, request_headers
from bench.serving import BARE_APP, JET_APP, Stack, start_app

CLOCK_TICKS = os.sysconf('SC_CLK_TCK') if hasattr(os, 'sysconf') else 100


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id."""
    seconds = {}
    for task in glob.glob(f'/proc/{pid}/task/*'):
        try:
            with open(f'{task}/stat', encoding='ascii') as stat:
                fields = stat.read().rsplit(')', 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        seconds[os.path.basename(task)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


@dataclasses.dataclass
class Measured:
    rps: float
    per_thread_us: list[float]  # CPU µs per request of each thread that did any, largest first

    @property
    def total_us(self) -> float:
        return sum(self.per_thread_us)


def measure(app: str, stack: Stack, env: Mapping[str, str], duration_s: float, connections: int,
            message: str = EXECUTE_ACTION) -> Measured:
    server = start_app(app, stack, env)
    try:
        children = subprocess.run(['pgrep', '-P', str(server.proc.pid)], capture_output=True, text=True,
                                  check=True).stdout.split()
        worker = int(children[-1])
        body, headers = request_body(message), request_headers()
        run_wrk(server.url(), body, headers, duration_s=1, connections=connections, threads=1)  # warm up
        before = thread_cpu(worker)
        result = run_wrk(server.url(), body, headers, duration_s=duration_s, connections=connections, threads=1)
        after = thread_cpu(worker)
    finally:
        server.stop()
    spent = [(after[thread] - before.get(thread, 0.0)) / result.requests * 1e6 for thread in after]
    return Measured(result.rps, sorted((us for us in spent if us > 0.05), reverse=True))


def servers(threads: int, database: Path, candidates: Sequence[str]) -> dict[str, tuple[str, Stack, dict[str, str]]]:
    stack = Stack(workers=1, threads=threads)
    serve = dataclasses.replace(stack, serve_command=True)
    env = {'BENCH_DB': str(database)}
    labels = {
        'bare': (BARE_APP, stack, env),
        'jet_sqla (plain gunicorn)': (JET_APP, stack, env),
        'jet-sqla serve': (JET_APP, serve, env),
        'jet-sqla serve --log-level warning': (JET_APP, serve, {**env, 'JET_SQLA_LOG_LEVEL': 'warning'}),
    }
    for candidate in candidates:
        label = 'jet-sqla serve, candidate' + (f' {candidate}' if len(candidates) > 1 else '')
        labels[label] = (JET_APP, dataclasses.replace(serve, jet_sqla_path=candidate), env)
    return labels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m bench.cpu_by_thread', description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, default=1, help='threads of the one worker (default 1)')
    parser.add_argument('--rounds', type=int, default=3, help='alternating rounds (default 3)')
    parser.add_argument('--duration', type=float, default=4, help='seconds per wrk run (default 4)')
    parser.add_argument('--connections', type=int, default=4, help='wrk connections (default 4)')
    parser.add_argument('--candidate', action='append', default=[],
                        help='a directory holding a changed copy of the jet_sqla package (may be repeated)')
    parser.add_argument('--message', choices=MESSAGE_NAMES, default=EXECUTE_ACTION,
                        help=f'the message to send (default {EXECUTE_ACTION})')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='bench-cpu-') as work:
        database = prepare_database(Path(work) / 'bench.sqlite3')
        labels = servers(args.threads, database, args.candidate)
        runs: dict[str, list[Measured]] = {label: [] for label in labels}
        for _ in range(args.rounds):
            for label, (app, stack, env) in labels.items():
                runs[label].append(measure(app, stack, env, args.duration, args.connections, args.message))
    print(f'{args.message}, 1 worker x {args.threads} threads, wrk -c{args.connections}, '
          f'{args.duration:g} s per run, {args.rounds} alternating rounds, medians')
    print('| server | req/s | worker CPU/req | by thread, largest first (median of each rank) |')
    print('|---|---|---|---|')
    for label, measured in runs.items():
        ranks = max(len(m.per_thread_us) for m in measured)
        by_rank = [statistics.median(m.per_thread_us[rank] if rank < len(m.per_thread_us) else 0.0
                                     for m in measured) for rank in range(ranks)]
        print(f'| {label} | {statistics.median(m.rps for m in measured):,.0f} | '
              f'{statistics.median(m.total_us for m in measured):.1f} µs | '
              f'{" / ".join(f"{us:.1f}" for us in by_rank)} µs |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
