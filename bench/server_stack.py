"""6. The server stack: gunicorn sync vs gthread, its C HTTP parser, stdlib json vs orjson.

Each variant serves both the bare endpoint and jet_sqla; every cell is
compared with the same app under ``sync`` (gunicorn's default), measured in
the same rounds, to show what each setting buys.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.report import Section
from bench.serving import (
    BARE_APP, JET_APP, Cells, LoadSettings, Stack, Summary, alternate, cpu_ratio, h1c_path, raw_cells, rps_ratio,
    ServerPool, ServerSpec,
)

#: The variants, by the name ``--stacks`` takes. The first is the baseline of the others.
VARIANTS: Mapping[str, Stack] = {
    'sync': Stack(worker_class='sync', threads=1),
    'sync+h1c': Stack(worker_class='sync', threads=1, parser='fast'),
    'gthread': Stack(),
    'gthread+h1c': Stack(parser='fast'),
    'gthread+stdlib': Stack(json='stdlib'),
    'gthread+freeze': Stack(gc_freeze=True),
    'gthread-8t': Stack(),
    'gthread-2n+1': Stack(),
    # jet-sqla serve's default: gthread with requests read on the event loop (slowloris)
    'buffering': Stack(worker_class='jet_sqla.workers.BufferingWorker'),
}
BASELINE = 'sync'
_CORES = os.cpu_count() or 1
#: Variants that do not take --workers and --threads: their own counts.
FIXED_COUNTS: Mapping[str, Mapping[str, int]] = {
    'gthread-8t': {'threads': 8},
    'gthread-2n+1': {'workers': 2 * _CORES + 1},  # the rule of thumb for sync workers
}


def run(pool: ServerPool, database: Path, load: LoadSettings, names: Sequence[str], messages: Sequence[str], *,
        workers: int, threads: int) -> Section:
    """Serve both apps under every variant in ``names`` and load them all in turns."""
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f'unknown stack {", ".join(unknown)}; choose from {", ".join(VARIANTS)}')
    notes: list[str] = []
    if any(VARIANTS[name].parser == 'fast' for name in names) and h1c_path() is None:
        notes.append('gunicorn-h1c did not install from PyPI: the C parser variants were left out')
        names = [name for name in names if VARIANTS[name].parser != 'fast']
    stacks = {name: _counted(name, workers, threads) for name in names}
    servers: dict[str, ServerSpec] = {}
    for name, stack in stacks.items():
        if stack.json == 'orjson':  # the bare app parses with the stdlib whatever JET_SQLA_JSON says
            servers[f'bare {name}'] = (BARE_APP, stack, {})
        servers[f'jet_sqla {name}'] = (JET_APP, stack, {'BENCH_DB': str(database)})
    cells = alternate(pool.get(servers), messages, load)
    result = section(cells, stacks, messages, load)
    result.notes[:0] = notes
    return result


def _counted(name: str, workers: int, threads: int) -> Stack:
    """The variant ``name`` with the run's worker and thread counts, unless it has its own."""
    variant = VARIANTS[name]
    counts = FIXED_COUNTS.get(name, {})
    return dataclasses.replace(
        variant,
        workers=counts.get('workers', workers),
        threads=counts.get('threads', threads if variant.worker_class != 'sync' else 1),
    )


def section(cells: Cells, stacks: Mapping[str, Stack], messages: Sequence[str], load: LoadSettings) -> Section:
    result = Section(
        'Server stack: worker class, HTTP parser, JSON library',
        ['message', 'app', 'stack', 'req/s', 'p50', 'p99', 'server CPU/req', f'req/s vs {BASELINE}',
         f'CPU: {BASELINE} / this', 'jet_sqla / bare req/s'],
    )
    for message in messages:
        for app in ('bare', 'jet_sqla'):
            for name, stack in stacks.items():
                key = (f'{app} {name}', message)
                if key not in cells:
                    continue
                summary = Summary.of(cells[key])
                baseline = (f'{app} {BASELINE}', message)
                has_baseline = baseline in cells and baseline != key
                versus = f'{rps_ratio(cells, key, baseline):.2f}x' if has_baseline else ''
                leaner = f'{cpu_ratio(cells, key, baseline):.2f}x' if has_baseline else ''
                bare = (f'bare {name}', message)
                if app == 'jet_sqla' and bare not in cells:
                    bare = (f'bare {name.replace("+stdlib", "")}', message)
                of_bare = f'{rps_ratio(cells, key, bare):.2f}x' if app == 'jet_sqla' and bare in cells else ''
                result.add(message, app, stack.label, *summary.cells(), versus, leaner, of_bare)
    result.notes.append(f'wrk -c{load.connections} -t{load.threads}, {load.duration_s:g} s per run, '
                        f'{load.rounds} alternating rounds over all servers, medians of per-round ratios')
    result.notes.append('sync workers close the connection after every response (no keep-alive); '
                        'gthread keeps it open, so wrk reuses it')
    result.raw = raw_cells(cells)
    return result
