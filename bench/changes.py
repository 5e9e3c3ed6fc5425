"""7. What change capture costs: a 1,000-row bulk update, with and without history, and before capture existed.

An action updates the balance of n customers (PostgreSQL), through
``bridge.execute``. Four variants run in one process, one run each in turn,
the order rotating every turn, so that each ratio compares runs made
moments apart:

- **before capture**: the jet_sqla package of the newest commit in this
  history without ``jet_sqla/changes.py``, exported with ``git archive`` and
  imported under the name ``jet_sqla_before`` (its imports are all relative),
  no audit;
- **now, no audit**: this checkout, no dry run and no audit, where no capture
  is attached at all;
- **now, audit, no history** and **now, audit + history**: this checkout, with
  ``audit=True`` and ``history`` off, then on;
- **control**: the *before capture* code again, on its own bridge and engine,
  to show how far apart two identical variants measure on this machine.

Each variant has its own engine (and pool). Targets: *now, no audit* within
1.02x of *before capture*; *audit + history* within 1.3x of *audit, no history*.
"""

from __future__ import annotations

import gc
import importlib
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.bulk import Base, Customer
from bench.report import Check, Section, frozen_heap, median, ms, paired_ratio

REPO = Path(__file__).resolve().parents[1]
ACTION = 'reprice'
BEFORE, PLAIN, AUDIT, HISTORY = 'before capture (no audit)', 'now, no audit', 'now, audit, no history', 'now, audit + history'
#: The same code as BEFORE on a bridge and engine of its own: how far apart two identical variants measure.
CONTROL = 'control: before capture, again'
VARIANTS = (BEFORE, PLAIN, AUDIT, HISTORY, CONTROL)
TARGET_PLAIN = 1.02
TARGET_HISTORY = 1.3


def baseline_commit() -> str:
    """The newest commit of this history without ``jet_sqla/changes.py``: the code as it was without capture.

    On a branch that merged others' work, that is the newest merged commit from
    elsewhere, so the comparison holds everything else equal.
    """
    commits = subprocess.run(['git', 'rev-list', '--date-order', 'HEAD'], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    for commit in commits:
        probe = subprocess.run(['git', 'cat-file', '-e', f'{commit}:jet_sqla/changes.py'], cwd=REPO,
                               capture_output=True, check=False)
        if probe.returncode != 0:
            return commit
    raise RuntimeError('every commit has jet_sqla/changes.py; there is no code without capture to compare with')


def import_before(revision: str, into: Path) -> Any:
    """The ``jet_sqla`` package as of ``revision``, imported as ``jet_sqla_before``."""
    archive = into / 'before.tar'
    subprocess.run(['git', 'archive', '--format=tar', '-o', str(archive), revision, 'jet_sqla'],
                   cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / 'unpacked', filter='data')
    (into / 'unpacked' / 'jet_sqla').rename(into / 'jet_sqla_before')
    sys.path.insert(0, str(into))
    try:
        return importlib.import_module('jet_sqla_before')
    finally:
        sys.path.remove(str(into))


def populate(engine: sa.Engine, rows: int) -> None:
    from bench.bulk import populate as populate_customers
    from jet_sqla import migrations

    populate_customers(engine, rows)
    migrations.upgrade(engine)


def reprice(customers: list[Customer]) -> None:
    """The benchmarked action: one ORM update per row, flushed as the run ends."""
    for customer in customers:
        customer.balance += 1


def _variants(url: str, size: int, before: Any) -> tuple[dict[str, Callable[[], Any]], list[sa.Engine]]:
    import jet_sqla

    engines: list[sa.Engine] = []
    calls: dict[str, Callable[[], Any]] = {}
    ids = list(range(1, size + 1))
    for name, package, options in ((BEFORE, before, {}), (CONTROL, before, {}), (PLAIN, jet_sqla, {}),
                                   (AUDIT, jet_sqla, {'audit': True, 'history': False}),
                                   (HISTORY, jet_sqla, {'audit': True, 'history': True})):
        engine = sa.create_engine(url)
        engines.append(engine)
        bridge = package.Bridge(Base, engine=engine, token='bench', **options)
        bridge.action(model=Customer, for_instance=True, bulk=True, name=ACTION)(reprice)
        calls[name] = lambda bridge=bridge: bridge.execute(ACTION, params={'ids': ids})
    return calls, engines


def run(engine: sa.Engine, size: int, *, turns: int) -> Section:
    """``turns`` turns; in each, every variant runs once, in a rotating order."""
    populate(engine, max(size, 1))
    url = engine.url.render_as_string(hide_password=False)
    revision = baseline_commit()
    result = Section(
        f'Change capture: a {size:,}-row bulk update (PostgreSQL), with and without history',
        ['variant', 'median per run', '/ before capture', '/ audit, no history'],
    )
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix='jet-sqla-before-') as tmp:
        before = import_before(revision, Path(tmp))
        calls, engines = _variants(url, size, before)
        try:
            for call in calls.values():  # warm up: pools, statement caches
                call()
            with frozen_heap():
                for turn in range(max(1, turns)):
                    shift = turn % len(VARIANTS)
                    for name in VARIANTS[shift:] + VARIANTS[:shift]:
                        gc.collect()
                        started = time.perf_counter()
                        calls[name]()
                        times[name].append(time.perf_counter() - started)
        finally:
            for variant_engine in engines:
                variant_engine.dispose()
    before_times, audit = times[BEFORE], times[AUDIT]
    for name in VARIANTS:
        result.add(name, ms(median(times[name])), f'{paired_ratio(times[name], before_times):.3f}x',
                   f'{paired_ratio(times[name], audit):.3f}x' if name in (AUDIT, HISTORY) else '')
    result.checks.append(Check('no dry run, no audit: now / before capture',
                               paired_ratio(times[PLAIN], before_times), '<=', TARGET_PLAIN))
    result.checks.append(Check('audit + history / audit without history', paired_ratio(times[HISTORY], audit),
                               '<=', TARGET_HISTORY))
    result.notes.append(f'{max(1, turns)} turns, each variant once per turn in a rotating order, '
                        'one process; medians of per-turn ratios')
    result.notes.append(f'before capture = jet_sqla at {revision}, imported as jet_sqla_before')
    result.notes.append('the control row is the noise floor: identical code, measured as a variant of its own')
    result.raw = {'times_s': times, 'baseline': revision}
    return result
