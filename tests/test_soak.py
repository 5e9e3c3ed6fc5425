"""A short soak: mixed messages at concurrency 16 against gunicorn, watching errors and worker memory.

``JET_SQLA_SOAK_SECONDS`` sets the length (default 30, at most 60). The
figures are printed so that they show in CI output.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jet_sqla.audit import action_log

from .apps.server import Gunicorn, gunicorn, rss_kib
from .apps.wallets import TREASURY, WALLETS, balances, prepare
from .conftest import TOKEN, database_url

pytestmark = pytest.mark.e2e

CONCURRENCY = 16
WORKERS = 4
SECONDS = min(60.0, float(os.environ.get('JET_SQLA_SOAK_SECONDS', '30')))
#: Traffic before the first memory reading: imports, pools and caches fill up then.
WARM_UP_SECONDS = 3.0
#: The most a worker may grow: ``end < start * GROWTH_FACTOR + GROWTH_MARGIN_KIB``.
GROWTH_FACTOR = 1.5
GROWTH_MARGIN_KIB = 20 * 1024
BALANCE = Decimal('1000000.00')


def next_message(rng: random.Random) -> tuple[str, dict[str, Any], bool]:
    """A message as Jet sends them: mostly reads, some runs. Returns (name, params, is_a_run)."""
    roll = rng.random()
    if roll < 0.25:
        return 'get_action_list', {}, False
    if roll < 0.55:
        return 'get_field_options', {'action': 'transfer', 'field': rng.choice(['source', 'target']),
                                     'q': f'wallet {rng.randint(1, 9)}', 'limit': 10}, False
    ref = uuid.UUID(int=rng.getrandbits(128)).hex
    if roll < 0.62:
        payers = rng.sample(range(2, WALLETS + 1), rng.randint(1, 10))
        return 'execute_action', {'name': 'tax', 'model': 'wallets',
                                  'params': {'ids': payers, 'treasury': TREASURY, 'ref': ref}}, True
    source, target = rng.sample(range(1, WALLETS + 1), 2)
    return 'execute_action', {'name': 'transfer',
                              'params': {'source': source, 'target': target, 'amount': '0.01', 'ref': ref}}, True


class Soak:
    """``CONCURRENCY`` clients sending mixed messages until told to stop."""

    def __init__(self, server: Gunicorn, seed: int) -> None:
        self.server = server
        self.seed = seed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.by_message: Counter[str] = Counter()
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.runs = 0

    def work(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        client = self.server.client(timeout=30)
        statuses: Counter[str] = Counter()
        by_message: Counter[str] = Counter()
        latencies: list[float] = []
        errors: list[str] = []
        runs = 0
        hard_stop = time.monotonic() + SECONDS + 30
        while not self.stop.is_set() and time.monotonic() < hard_stop:
            name, params, is_run = next_message(rng)
            by_message[name] += 1
            try:
                reply = client.message(name, params)
            except OSError as error:
                statuses['no answer'] += 1
                errors.append(f'{name}: {type(error).__name__}: {error}')
                continue
            latencies.append(reply.seconds)
            statuses[str(reply.status)] += 1
            if reply.status != 200 or not reply.content_type.startswith('application/json'):
                errors.append(f'{name}: {reply.status} {reply.body!r:.300}')
            elif is_run:
                runs += 1
        client.close()
        with self.lock:
            self.statuses.update(statuses)
            self.by_message.update(by_message)
            self.latencies.extend(latencies)
            self.errors.extend(errors)
            self.runs += runs


def memory(pids: list[int]) -> dict[int, int]:
    return {pid: rss_kib(pid) for pid in pids}


def test_soak_mixed_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    engine = prepare(database_url('postgresql', tmp_path), BALANCE)
    seed = random.SystemRandom().randrange(2**32)
    try:
        with gunicorn('tests.apps.wallets:create_app()', database_url=engine.url.render_as_string(hide_password=False),
                      token=TOKEN, workers=WORKERS, log_path=tmp_path / 'gunicorn.log') as server:
            soak = Soak(server, seed)
            threads = [threading.Thread(target=soak.work, args=(index,)) for index in range(CONCURRENCY)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(WARM_UP_SECONDS)
            workers = server.worker_pids()
            at_start = memory(workers)
            samples = [at_start]
            while time.monotonic() - started < SECONDS:
                time.sleep(min(5.0, max(0.0, SECONDS - (time.monotonic() - started))))
                samples.append(memory(workers))
            soak.stop.set()
            for thread in threads:
                thread.join(60)
            elapsed = time.monotonic() - started
            at_end = samples[-1]
            workers_after = server.worker_pids()
            log_tail = server.log_tail()
    finally:
        final = balances(engine)
        with engine.connect() as connection:
            audited = connection.execute(
                sa.select(sa.func.count()).select_from(action_log).where(action_log.c.outcome == 'success')
            ).scalar_one()
        engine.dispose()

    total = sum(soak.statuses.values())
    error_rate = len(soak.errors) / total if total else 1.0
    latencies = sorted(soak.latencies)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    growth = {pid: (at_start[pid], at_end[pid]) for pid in workers}
    with capsys.disabled():
        print(f'\n[reliability] soak postgresql seed={seed}: {elapsed:.0f}s concurrency={CONCURRENCY} '
              f'workers={WORKERS}x2 requests={total} ({total / elapsed:.0f}/s) {dict(soak.by_message)} '
              f'statuses={dict(soak.statuses)} errors={len(soak.errors)} error_rate={error_rate:.4%} '
              f'p50={p50:.1f}ms p99={p99:.1f}ms', flush=True)
        for pid, (start, end) in growth.items():
            trend = ' '.join(f'{sample[pid] // 1024}' for sample in samples)
            print(f'[reliability] soak worker {pid}: RSS start={start / 1024:.1f}MiB end={end / 1024:.1f}MiB '
                  f'(samples MiB: {trend})', flush=True)

    assert soak.errors == [], f'{len(soak.errors)} errors, first: {soak.errors[:5]}\n{log_tail}'
    assert total > CONCURRENCY * 10, 'too few requests to call this a soak'
    assert workers_after == workers, 'a worker died or was replaced during the soak'
    for pid, (start, end) in growth.items():
        assert end < start * GROWTH_FACTOR + GROWTH_MARGIN_KIB, f'worker {pid} grew from {start} KiB to {end} KiB'
    # The runs moved money around without creating or losing any, and each one was logged.
    assert sum(final.values(), Decimal(0)) == BALANCE * WALLETS
    assert audited == soak.runs
