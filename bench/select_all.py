""""Select all" on PostgreSQL: a do-nothing bulk action over a whole table but a few rows, vs the same load by hand.

The hand-written baseline is what a careful user writes for "every row but
these": one transaction, keyset pages of 500 (``WHERE id > :last ORDER BY id
LIMIT 500``), the excluded ids dropped in Python. jet_sqla answers the
``inverseIds: true`` request through the real app (falcon.testing), so its
time includes the count it makes before loading, the JSON and the HTTP layer.
The variants run in alternating turns, in the same process, on the same table.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import Session

from bench.bulk import ACTION, Customer, StatementCounter, _timed, make_bridge, populate
from bench.payloads import BENCH_TOKEN, dumps
from bench.report import Check, Section, frozen_heap, median, ms, paired_ratio

TARGET_RATIO = 1.3
PAGE = 500
EXCLUDED = 10


def hand_keyset(engine: sa.Engine, excluded: set[int]) -> list[Customer]:
    """Every row but ``excluded``, in keyset pages of 500, in one transaction."""
    loaded: list[Customer] = []
    last = 0
    with Session(engine, expire_on_commit=False) as session, session.begin():
        while True:
            page = list(session.scalars(sa.select(Customer).where(Customer.id > last).order_by(Customer.id).limit(PAGE)))
            if not page:
                return loaded
            last = page[-1].id
            loaded.extend(customer for customer in page if customer.id not in excluded)
            if len(page) < PAGE:
                return loaded


def _variants(engine: sa.Engine, http: testing.TestClient, excluded: list[int]) -> dict[str, Callable[[], Any]]:
    """The compared loads, by name; the first is the baseline."""
    body = dumps({'name': 'execute_action',
                  'params': {'name': ACTION, 'ids': excluded, 'inverseIds': True, 'params': {}}})
    headers = {'Authorization': f'Bearer {BENCH_TOKEN}', 'Content-Type': 'application/json'}

    def select_all() -> None:
        response = http.simulate_post('/api/messages/', body=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f'select all: {response.status_code} {response.text[:200]}')

    return {'hand: keyset pages': lambda: hand_keyset(engine, set(excluded)),
            'jet_sqla: inverseIds over HTTP (falcon.testing)': select_all}


def run(engine: sa.Engine, sizes: Sequence[int], *, repeats: int) -> Section:
    """Time both variants for a table of each size; count jet_sqla's statements."""
    counter = StatementCounter(engine)
    result = Section(
        '"Select all" on PostgreSQL: every row but 10, vs keyset pages by hand',
        ['rows', 'variant', 'median time', '/ hand', 'statements'],
    )
    for size in sizes:
        populate(engine, size)
        bridge = make_bridge(engine)
        http = testing.TestClient(bridge.wsgi_app())
        excluded = random.Random(size).sample(range(1, size + 1), EXCLUDED)
        variants = _variants(engine, http, excluded)
        if len(hand_keyset(engine, set(excluded))) != size - EXCLUDED:
            raise RuntimeError('the hand-written load did not find every row')
        with frozen_heap():
            statements = {name: counter.measure(call) for name, call in variants.items()}  # also a warm-up
            times: dict[str, list[float]] = {name: [] for name in variants}
            for round_index in range(max(1, repeats) * max(1, min(6, 30_000 // size))):
                names = list(variants)
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    times[name].append(_timed(variants[name]))
        hand = times['hand: keyset pages']
        for name in variants:
            result.add(f'{size:,}', name, ms(median(times[name])), f'{paired_ratio(times[name], hand):.2f}x',
                       statements[name])
        subject = 'jet_sqla: inverseIds over HTTP (falcon.testing)'
        limit = math.ceil(size / PAGE) + 5
        result.checks.append(Check(f'{size:,} rows: select all time / hand', paired_ratio(times[subject], hand),
                                   '<=', TARGET_RATIO))
        result.checks.append(Check(f'{size:,} rows: statements (ceil(n/500)+5 = {limit})', statements[subject],
                                   '<=', limit, ''))
        result.raw[str(size)] = {'times_s': times, 'statements': statements}
    result.notes.append(f'{EXCLUDED} ids excluded at random; {max(1, repeats)} alternating timed runs per variant '
                        '(up to 6x more for small tables), medians of per-run ratios')
    return result
