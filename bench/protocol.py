"""1. Protocol overhead: jet_sqla against the bare Falcon endpoint, same gunicorn stack, same bytes.

jet_sqla is served twice: under plain gunicorn (``python -m gunicorn``, warning
level, no access log), and by ``jet-sqla serve`` with its defaults (structured
log lines at info, each action run logged), both with the bare endpoint's
worker class, workers and threads. A third jet_sqla server adds
``--access-log``, to show what an access line per request costs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from bench.payloads import MESSAGE_NAMES, TRIVIAL_ACTION
from bench.report import Check, Section
from bench.serving import (
    BARE_APP, JET_APP, Cells, LoadSettings, Stack, Summary, alternate, cpu_ratio, raw_cells, rps_ratio,
    ServerPool, ServerSpec,
)

TARGET = 0.95
SERVE = 'jet-sqla serve'
SERVE_ACCESS = 'jet-sqla serve --access-log'


CANDIDATE = 'jet_sqla candidate'


def run(pool: ServerPool, database: Path, load: LoadSettings, stack: Stack, *,
        messages: Sequence[str] = MESSAGE_NAMES, candidate: Path | None = None) -> Section:
    """Load the bare app and jet_sqla in turns; check jet_sqla >= 0.9x bare.

    Args:
        candidate: A directory holding a changed copy of the ``jet_sqla`` package,
            served as a third server in the same rounds.
    """
    env = {'BENCH_DB': str(database)}
    specs: dict[str, ServerSpec] = {
        'bare': (BARE_APP, stack, {}),
        'jet_sqla': (JET_APP, stack, env),
        SERVE: (JET_APP, dataclasses.replace(stack, serve_command=True), env),
        SERVE_ACCESS: (JET_APP, dataclasses.replace(stack, serve_command=True, access_log=True), env),
    }
    if candidate is not None:
        specs[CANDIDATE] = (JET_APP, dataclasses.replace(stack, jet_sqla_path=str(candidate)), env)
        specs[f'{SERVE} candidate'] = (JET_APP, dataclasses.replace(stack, serve_command=True,
                                                                    jet_sqla_path=str(candidate)), env)
    cells = alternate(pool.get(specs), messages, load)
    return section(cells, load, stack, list(specs), messages)


def section(cells: Cells, load: LoadSettings, stack: Stack, labels: list[str], messages: Sequence[str]) -> Section:
    result = Section(
        'Protocol overhead: jet_sqla vs the bare Falcon endpoint',
        ['message', 'server', 'req/s', 'p50', 'p99', 'server CPU/req', 'req/s / bare', 'CPU: bare / server'],
    )
    for message in messages:
        ratio = rps_ratio(cells, ('jet_sqla', message), ('bare', message))
        for label in labels:
            summary = Summary.of(cells[(label, message)])
            key, bare = (label, message), ('bare', message)
            result.add(message, label, *summary.cells(),
                       *((f'{rps_ratio(cells, key, bare):.2f}x', f'{cpu_ratio(cells, key, bare):.2f}x')
                         if label != 'bare' else ('', '')))
        result.checks.append(Check(f'{message}: jet_sqla (plain gunicorn) req/s / bare req/s', ratio, '>=', TARGET))
        if SERVE in labels:
            result.checks.append(Check(f'{message}: {SERVE} (defaults) req/s / bare req/s',
                                       rps_ratio(cells, (SERVE, message), ('bare', message)), '>=', TARGET))
    result.notes.append(f'{SERVE}: its defaults (kv lines at info, one per action run, no access lines) but '
                        'the worker class, workers and threads; its log goes to a file')
    result.notes.append(f'gunicorn {stack.label}; wrk -c{load.connections} -t{load.threads}, '
                        f'{load.duration_s:g} s per run, {load.rounds} alternating rounds, medians')
    result.notes.append('server CPU/req: CPU time of all the server\'s processes during the run / requests; '
                        'it moves far less than req/s with the load of a shared machine')
    result.notes.append(f'execute_action runs {TRIVIAL_ACTION!r}, a declared common action with no form; '
                        'get_action_list lists 20 declared actions (3,995 bytes, byte-identical on both sides)')
    result.raw = raw_cells(cells)
    return result
