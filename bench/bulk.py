"""2. Bulk resolution on PostgreSQL: a do-nothing bulk action over n ids vs the same ORM load by hand.

Same process, same table, same session settings (``expire_on_commit=False``,
as jet_sqla's sessions), the variants run in alternating turns. The
hand-written load is what a careful user writes: one transaction, chunks of
500 ids, ``select(Model).where(pk.in_(chunk))``. A single-query variant with
``pk = ANY(:array)`` is shown too, as a floor for any chunked load.
"""

from __future__ import annotations

import gc
import math
import random
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from falcon import testing
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.payloads import BENCH_TOKEN, dumps
from bench.report import Check, Section, frozen_heap, median, mib, ms, paired_ratio
from jet_sqla import Bridge

TARGET_RATIO = 1.3
CHUNK = 500
ACTION = 'touch_nothing'
#: The variants whose peak memory is measured: the two the target compares.
MEMORY_MEASURED = ('hand: chunked IN', 'jet_sqla: bridge.execute')


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = 'bench_customers'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str] = mapped_column(sa.String(200))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    created_at: Mapped[datetime]


def populate(engine: sa.Engine, rows: int) -> None:
    """(Re)create the table with ``rows`` rows, made by the server itself."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.text(
            'INSERT INTO bench_customers (id, name, email, balance, created_at) '
            "SELECT g, 'customer ' || g, 'c' || g || '@example.com', (g % 100000) / 100.0, "
            "now() - g * interval '1 minute' FROM generate_series(1, :rows) AS g"
        ), {'rows': rows})
        connection.execute(sa.text('ANALYZE bench_customers'))


def make_bridge(engine: sa.Engine) -> Bridge:
    bridge = Bridge(Base, engine=engine, token=BENCH_TOKEN)

    @bridge.action(model=Customer, for_instance=True, bulk=True, name=ACTION)
    def touch_nothing(customers: list[Customer]) -> None:
        return None

    return bridge


def hand_chunked(engine: sa.Engine, ids: Sequence[int]) -> list[Customer]:
    """The same ORM load written by hand: chunks of 500, ``pk IN (…)``, one transaction."""
    loaded: list[Customer] = []
    with Session(engine, expire_on_commit=False) as session, session.begin():
        for start in range(0, len(ids), CHUNK):
            loaded.extend(session.scalars(sa.select(Customer).where(Customer.id.in_(ids[start:start + CHUNK]))))
    return loaded


_ANY_IDS = Customer.id == sa.any_(sa.bindparam('ids', type_=postgresql.ARRAY(sa.Integer)))


def hand_any(engine: sa.Engine, ids: Sequence[int]) -> list[Customer]:
    """One query for every id: ``pk = ANY(:array)`` (PostgreSQL only)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return list(session.scalars(sa.select(Customer).where(_ANY_IDS), {'ids': list(ids)}))


class StatementCounter:
    """Counts the statements an engine sends while ``counting``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self.counting = False
        sa.event.listen(engine, 'before_cursor_execute', self._count)

    def _count(self, *args: Any) -> None:
        if self.counting:
            self.count += 1

    def measure(self, call: Callable[[], Any]) -> int:
        self.count, self.counting = 0, True
        try:
            call()
        finally:
            self.counting = False
        return self.count


def _timed(call: Callable[[], Any]) -> float:
    gc.collect()
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _peak_memory(call: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _variants(engine: sa.Engine, bridge: Bridge, http: testing.TestClient,
              ids: list[int]) -> dict[str, Callable[[], Any]]:
    """The compared loads of ``ids``, by name; the first is the baseline."""
    body = dumps({'name': 'execute_action', 'params': {'name': ACTION, 'params': {'ids': ','.join(map(str, ids))}}})
    headers = {'Authorization': f'Bearer {BENCH_TOKEN}', 'Content-Type': 'application/json'}

    def through_http() -> None:
        response = http.simulate_post('/api/messages/', body=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f'execute_action over {len(ids)} ids: {response.status_code} {response.text[:200]}')

    return {
        'hand: chunked IN': lambda: hand_chunked(engine, ids),
        'jet_sqla: bridge.execute': lambda: bridge.execute(ACTION, params={'ids': ids}),
        'jet_sqla: HTTP (falcon.testing)': through_http,
        'hand: one query, = ANY(array)': lambda: hand_any(engine, ids),
    }


def run(engine: sa.Engine, sizes: Sequence[int], *, repeats: int) -> Section:
    """Time every variant at every size, in turns; count jet_sqla's statements; measure peak memory."""
    populate(engine, 2 * max(sizes))
    bridge = make_bridge(engine)
    http = testing.TestClient(bridge.wsgi_app())
    counter = StatementCounter(engine)
    result = Section(
        'Bulk resolution on PostgreSQL: a do-nothing bulk action vs the same ORM load by hand',
        ['ids', 'variant', 'median time', '/ hand', 'statements', 'peak memory (tracemalloc)'],
    )
    with frozen_heap():
        for size in sizes:
            ids = random.Random(size).sample(range(1, 2 * max(sizes) + 1), size)  # request order is random
            variants = _variants(engine, bridge, http, ids)
            if len(hand_chunked(engine, ids)) != size or len(hand_any(engine, ids)) != size:
                raise RuntimeError('the hand-written loads did not find every id')
            # Statements are counted in one untimed run of each variant, which also warms it up.
            statements = {name: counter.measure(call) for name, call in variants.items()}
            times: dict[str, list[float]] = {name: [] for name in variants}
            # Small loads are quick and noisier: give them up to 6 times the runs.
            for round_index in range(max(1, repeats) * max(1, min(6, 30_000 // size))):
                names = list(variants)
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    times[name].append(_timed(variants[name]))
            peaks = {name: _peak_memory(variants[name]) for name in MEMORY_MEASURED}
            hand = times['hand: chunked IN']
            for name in variants:
                ratio = paired_ratio(times[name], hand)
                result.add(f'{size:,}', name, ms(median(times[name])), f'{ratio:.2f}x', statements[name],
                           mib(peaks[name]) if name in peaks else '')
            limit = math.ceil(size / CHUNK) + 5
            result.checks.append(Check(f'{size:,} ids: bridge.execute time / hand',
                                       paired_ratio(times['jet_sqla: bridge.execute'], hand), '<=', TARGET_RATIO))
            result.checks.append(Check(f'{size:,} ids: statements (ceil(n/500)+5 = {limit})',
                                       statements['jet_sqla: bridge.execute'], '<=', limit, ''))
            result.raw[str(size)] = {'times_s': times, 'statements': statements, 'peak_bytes': peaks}
    result.notes.append(f'{2 * max(sizes):,}-row table; ids drawn at random, in random order; '
                        f'{max(1, repeats)} alternating timed runs per variant (up to 6x more for small n), '
                        'medians of per-run ratios')
    result.notes.append('peak memory: tracemalloc, in separate untimed runs of the two compared loads '
                        '(tracemalloc slows Python down)')
    return result
