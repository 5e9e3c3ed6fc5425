"""4. The reference: jet_sqla against jet-bridge 1.12.13 (Tornado), same machine, same run, same SQLite file.

Both run 2 worker processes by default, and both answer with the same
handler work: the 20-action list, and a trivial action returning
``{"result": true}``. jet-bridge lives in its own Python 3.9 virtualenv,
built from PyPI on first use (see bench/reference.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from bench.payloads import MESSAGE_NAMES
from bench.protocol import CANDIDATE
from bench.reference import REFERENCE_REQUIREMENT, start_reference
from bench.report import Check, Section
from bench.serving import (
    JET_APP, SYNC, LoadSettings, Stack, Summary, alternate, cpu_ratio, raw_cells, rps_ratio,
    ServerPool,
)
from bench.servers import free_port

TARGET = 2.0
REFERENCE = 'jet-bridge 1.12.13'


def run(pool: ServerPool, database: Path, load: LoadSettings, stack: Stack, *,
        messages: Sequence[str] = MESSAGE_NAMES, candidate: Path | None = None) -> Section:
    """jet_sqla on ``stack`` and on sync workers, against the reference, in turns.

    Args:
        candidate: A directory holding a changed copy of the ``jet_sqla`` package,
            served on ``stack`` too, in the same rounds.
    """
    sync = dataclasses.replace(SYNC, workers=stack.workers, parser=stack.parser, json=stack.json)
    labels = {'jet_sqla': stack, 'jet_sqla sync': sync}
    if candidate is not None:
        labels[CANDIDATE] = dataclasses.replace(stack, jet_sqla_path=str(candidate))
    env = {'BENCH_DB': str(database)}
    servers = pool.get({label: (JET_APP, server_stack, env) for label, server_stack in labels.items()})
    servers[REFERENCE] = pool.external(
        (REFERENCE, str(database), stack.workers),
        lambda: start_reference(database, free_port(), workers=stack.workers),
    )
    cells = alternate(servers, messages, load)
    result = Section(
        f'The reference: jet_sqla vs {REFERENCE}',
        ['message', 'server', 'req/s', 'p50', 'p99', 'server CPU/req', f'req/s / {REFERENCE}',
         f'CPU: {REFERENCE} / server'],
    )
    for message in messages:
        for label in (*labels, REFERENCE):
            summary = Summary.of(cells[(label, message)])
            key, reference = (label, message), (REFERENCE, message)
            result.add(message, label, *summary.cells(),
                       *((f'{rps_ratio(cells, key, reference):.2f}x', f'{cpu_ratio(cells, key, reference):.2f}x')
                         if label != REFERENCE else ('', '')))
        result.checks.append(Check(f'{message}: jet_sqla req/s / {REFERENCE} req/s',
                                   rps_ratio(cells, ('jet_sqla', message), (REFERENCE, message)), '>=', TARGET))
    result.notes.append(f'jet_sqla: gunicorn {stack.label}; jet_sqla sync: gunicorn {sync.label}; '
                        f'{REFERENCE}: {REFERENCE_REQUIREMENT} on Tornado, {stack.workers} processes, '
                        'its default thread pool (one thread per core), Python 3.9')
    result.notes.append(f'wrk -c{load.connections} -t{load.threads}, {load.duration_s:g} s per run, '
                        f'{load.rounds} alternating rounds, medians of per-round ratios; same SQLite file')
    result.raw = raw_cells(cells)
    return result
