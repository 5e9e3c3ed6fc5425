"""7. What change capture costs: a 1,000-row bulk update, with and without history, and before capture existed.

An action updates the balance of n customers (PostgreSQL), through
``bridge.execute``. Four variants, each in a fresh child process so that
two versions of jet_sqla never share one interpreter, run in alternating
turns, each timing several runs after a warm-up:

- **before capture**: the jet_sqla package of the commit before
  ``jet_sqla/changes.py`` was added (``git archive``), no audit;
- **now, no audit**: this checkout, no dry run and no audit, where no capture
  is attached at all;
- **now, audit, no history** and **now, audit + history**: this checkout, with
  ``audit=True`` and ``history`` off, then on.

Targets: *now, no audit* within 1.02x of *before capture*; *audit + history*
within 1.3x of *audit, no history*.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench.bulk import Base, Customer
from bench.report import Check, Section, median, ms, paired_ratio

REPO = Path(__file__).resolve().parents[1]
ACTION = 'reprice'
BEFORE, PLAIN, AUDIT, HISTORY = 'before capture (no audit)', 'now, no audit', 'now, audit, no history', 'now, audit + history'
VARIANTS = (BEFORE, PLAIN, AUDIT, HISTORY)
TARGET_PLAIN = 1.02
TARGET_HISTORY = 1.3


def baseline_commit() -> str:
    """The parent of the commit that added ``jet_sqla/changes.py``: the code before capture existed."""
    added = subprocess.run(['git', 'log', '--diff-filter=A', '--format=%H', '--', 'jet_sqla/changes.py'],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    if not added:
        raise RuntimeError('jet_sqla/changes.py is not in the git history; cannot find the code before it')
    return f'{added[-1]}^'


def export_package(revision: str, into: Path) -> Path:
    """``jet_sqla/`` as of ``revision``, unpacked under ``into``; returns the directory to put on sys.path."""
    archive = into / 'before.tar'
    subprocess.run(['git', 'archive', '--format=tar', '-o', str(archive), revision, 'jet_sqla'],
                   cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter='data')
    return into


def populate(engine: sa.Engine, rows: int) -> None:
    from bench.bulk import populate as populate_customers
    from jet_sqla import migrations

    populate_customers(engine, rows)
    migrations.upgrade(engine)


def run(engine: sa.Engine, size: int, *, rounds: int, runs: int) -> Section:
    """Time the variants in alternating child processes; ``rounds`` turns of ``runs`` timed runs each."""
    populate(engine, max(size, 1))
    url = engine.url.render_as_string(hide_password=False)
    revision = baseline_commit()
    result = Section(
        f'Change capture: a {size:,}-row bulk update (PostgreSQL), with and without history',
        ['variant', 'median per run', '/ before capture', '/ audit, no history'],
    )
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix='jet-sqla-before-') as tmp:
        paths = {BEFORE: str(export_package(revision, Path(tmp))), PLAIN: str(REPO), AUDIT: str(REPO),
                 HISTORY: str(REPO)}
        for round_index in range(max(1, rounds)):
            shift = round_index % len(VARIANTS)
            for name in VARIANTS[shift:] + VARIANTS[:shift]:
                times[name].append(median(_child(paths[name], name, url, size, runs)))
    before, audit = times[BEFORE], times[AUDIT]
    for name in VARIANTS:
        result.add(name, ms(median(times[name])), f'{paired_ratio(times[name], before):.3f}x',
                   f'{paired_ratio(times[name], audit):.3f}x' if name in (AUDIT, HISTORY) else '')
    result.checks.append(Check('no dry run, no audit: now / before capture', paired_ratio(times[PLAIN], before),
                               '<=', TARGET_PLAIN))
    result.checks.append(Check('audit + history / audit without history', paired_ratio(times[HISTORY], audit),
                               '<=', TARGET_HISTORY))
    result.notes.append(f'each variant in its own process, {max(1, rounds)} alternating rounds of {runs} timed runs '
                        '(after 3 untimed), medians per round, medians of per-round ratios')
    result.notes.append(f'before capture = jet_sqla at {revision} (git archive)')
    result.raw = {'times_s': times, 'baseline': revision}
    return result


def _child(path: str, variant: str, url: str, size: int, runs: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([path, str(REPO)]), BENCH_JET_SQLA_PATH=path)
    completed = subprocess.run(
        [sys.executable, '-m', 'bench.changes', variant, url, str(size), str(runs)],
        cwd=path if variant == BEFORE else REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f'{variant}: {completed.stderr[-2000:]}')
    timings: list[float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return timings


def reprice(customers: list[Customer]) -> None:
    """The benchmarked action: one ORM update per row, flushed as the run ends."""
    for customer in customers:
        customer.balance += 1


def child(variant: str, url: str, size: int, runs: int) -> list[float]:
    """In a child process: build the bridge ``variant`` asks for and time ``runs`` bulk updates."""
    import jet_sqla
    from jet_sqla import Bridge

    expected = Path(os.environ['BENCH_JET_SQLA_PATH']).resolve()
    if not Path(jet_sqla.__file__).resolve().is_relative_to(expected):
        raise RuntimeError(f'{variant}: imported {jet_sqla.__file__}, not the copy under {expected}')
    engine = sa.create_engine(url)
    options: dict[str, object] = {}
    if variant in (AUDIT, HISTORY):
        options = {'audit': True, 'history': variant == HISTORY}
    bridge = Bridge(Base, engine=engine, token='bench', **options)  # type: ignore[arg-type]

    bridge.action(model=Customer, for_instance=True, bulk=True, name=ACTION)(reprice)
    ids = list(range(1, size + 1))
    timings: list[float] = []
    for index in range(3 + runs):
        started = time.perf_counter()
        bridge.execute(ACTION, params={'ids': ids})
        if index >= 3:
            timings.append(time.perf_counter() - started)
    engine.dispose()
    return timings


if __name__ == '__main__':
    variant_name, database_url, rows, repeats = sys.argv[1:5]
    print(json.dumps(child(variant_name, database_url, int(rows), int(repeats))))

