"""2. Bulk resolution: a do-nothing bulk action over n ids vs the best ORM load written by hand.

Same process, same table, same session settings (``expire_on_commit=False``,
as jet_sqla's sessions), the variants run in alternating turns, on PostgreSQL
and on MariaDB. The hand-written loads are the ones a careful user would pick
from, each into ORM instances in one transaction:

- chunked IN: chunks of 500 ids, ``select(Model).where(pk.in_(chunk))``;
- one literal IN: every id written into the SQL text (they are integers);
- a VALUES join: the ids as a ``VALUES`` list joined to the table;
- one ``= ANY(:array)`` (PostgreSQL only): every id in one array parameter.

The target compares jet_sqla with the fastest of them *in each round*, and its
peak memory (tracemalloc, separate untimed runs) with that of the load that
was fastest overall. jet_sqla returns the instances in request order; the
hand-written loads return them in whatever order the database sends them.
"""

from __future__ import annotations

import gc
import random
from contextlib import nullcontext
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

TARGET_RATIO = 1.0
MEMORY_TARGET = 1.1
STATEMENT_LIMIT_10K = 20
CHUNK = 500
ACTION = 'touch_nothing'
JET = 'jet_sqla: bridge.execute'
HTTP = 'jet_sqla: HTTP (falcon.testing)'
HAND_PREFIX = 'hand: '


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
        if engine.dialect.name == 'postgresql':
            connection.execute(sa.text(
                'INSERT INTO bench_customers (id, name, email, balance, created_at) '
                "SELECT g, 'customer ' || g, 'c' || g || '@example.com', (g % 100000) / 100.0, "
                "now() - g * interval '1 minute' FROM generate_series(1, :rows) AS g"
            ), {'rows': rows})
            connection.execute(sa.text('ANALYZE bench_customers'))
        else:  # MariaDB: its SEQUENCE engine's seq_1_to_<n> tables
            connection.execute(sa.text(
                'INSERT INTO bench_customers (id, name, email, balance, created_at) '
                "SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com'), (seq % 100000) / 100.0, "
                f'NOW() - INTERVAL seq MINUTE FROM seq_1_to_{int(rows)}'
            ))
            connection.execute(sa.text('ANALYZE TABLE bench_customers'))


def make_bridge(engine: sa.Engine) -> Bridge:
    bridge = Bridge(Base, engine=engine, token=BENCH_TOKEN)

    @bridge.action(model=Customer, for_instance=True, bulk=True, name=ACTION)
    def touch_nothing(customers: list[Customer]) -> None:
        return None

    return bridge


def _load(engine: sa.Engine, statement: Any, parameters: dict[str, Any] | None = None) -> list[Customer]:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return list(session.scalars(statement, parameters or {}))


def hand_chunked(engine: sa.Engine, ids: Sequence[int]) -> list[Customer]:
    """Chunks of 500, ``pk IN (…)`` with bound parameters, one transaction."""
    loaded: list[Customer] = []
    with Session(engine, expire_on_commit=False) as session, session.begin():
        for start in range(0, len(ids), CHUNK):
            loaded.extend(session.scalars(sa.select(Customer).where(Customer.id.in_(ids[start:start + CHUNK]))))
    return loaded


def hand_literal_in(engine: sa.Engine, ids: Sequence[int]) -> list[Customer]:
    """One ``pk IN (1, 2, …)`` with the (integer) ids written into the SQL."""
    listed = ','.join(str(int(value)) for value in ids)
    return _load(engine, sa.select(Customer).where(sa.text(f'bench_customers.id IN ({listed})')))


def hand_values_join(engine: sa.Engine, ids: Sequence[int]) -> list[Customer]:
    """The ids as a ``VALUES`` list joined to the table."""
    rows = ','.join(f'({int(value)})' for value in ids)
    if engine.dialect.name == 'postgresql':
        sql = f'SELECT c.* FROM bench_customers AS c JOIN (VALUES {rows}) AS v(id) ON c.id = v.id'
    else:  # MariaDB names a VALUES list's columns through a CTE's column list
        sql = f'WITH v(id) AS (VALUES {rows}) SELECT c.* FROM bench_customers AS c JOIN v ON c.id = v.id'
    return _load(engine, sa.select(Customer).from_statement(sa.text(sql)))


_ANY_IDS = Customer.id == sa.any_(sa.bindparam('ids', type_=postgresql.ARRAY(sa.Integer)))


def hand_any(engine: sa.Engine, ids: Sequence[int]) -> list[Customer]:
    """One query for every id: ``pk = ANY(:array)`` (PostgreSQL only)."""
    return _load(engine, sa.select(Customer).where(_ANY_IDS), {'ids': list(ids)})


def hand_loads(dialect: str) -> dict[str, Callable[[sa.Engine, Sequence[int]], list[Customer]]]:
    """The hand-written loads that run on ``dialect``, by name."""
    loads = {
        f'{HAND_PREFIX}chunked IN ({CHUNK})': hand_chunked,
        f'{HAND_PREFIX}one literal IN': hand_literal_in,
        f'{HAND_PREFIX}VALUES join': hand_values_join,
    }
    if dialect == 'postgresql':
        loads[f'{HAND_PREFIX}one = ANY(array)'] = hand_any
    return loads


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
    """The compared loads of ``ids``, by name: the hand-written ones, then jet_sqla's."""
    body = dumps({'name': 'execute_action', 'params': {'name': ACTION, 'params': {'ids': ','.join(map(str, ids))}}})
    headers = {'Authorization': f'Bearer {BENCH_TOKEN}', 'Content-Type': 'application/json'}

    def through_http() -> None:
        response = http.simulate_post('/api/messages/', body=body, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f'execute_action over {len(ids)} ids: {response.status_code} {response.text[:200]}')

    variants: dict[str, Callable[[], Any]] = {
        name: (lambda load=load: load(engine, ids)) for name, load in hand_loads(engine.dialect.name).items()
    }
    variants[JET] = lambda: bridge.execute(ACTION, params={'ids': ids})
    variants[HTTP] = through_http
    return variants


def run(engine: sa.Engine, sizes: Sequence[int], *, repeats: int, rows: int, frozen: bool = False) -> Section:
    """Time every variant at every size, in turns; count jet_sqla's statements; measure peak memory.

    Args:
        frozen: Freeze the process's objects out of the collector's way while timing
            (``gc.freeze()``). Off by default: a server's heap is not frozen, and the
            collector walking it during a load is part of what a load costs there.
    """
    rows = max(rows, 2 * max(sizes))
    populate(engine, rows)
    bridge = make_bridge(engine)
    http = testing.TestClient(bridge.wsgi_app())
    counter = StatementCounter(engine)
    database = 'PostgreSQL' if engine.dialect.name == 'postgresql' else 'MariaDB'
    result = Section(
        f'Bulk resolution on {database}: a do-nothing bulk action vs the best ORM load by hand',
        ['ids', 'variant', 'median time', '/ best hand', 'statements', 'peak memory (tracemalloc)'],
    )
    with frozen_heap() if frozen else nullcontext():
        for size in sizes:
            ids = random.Random(size).sample(range(1, rows + 1), size)  # request order is random
            variants = _variants(engine, bridge, http, ids)
            hands = [name for name in variants if name.startswith(HAND_PREFIX)]
            for name in hands:
                if len(variants[name]()) != size:
                    raise RuntimeError(f'{name} did not find every id')
            # Statements are counted in one untimed run of each variant, which also warms it up.
            statements = {name: counter.measure(call) for name, call in variants.items()}
            times: dict[str, list[float]] = {name: [] for name in variants}
            # Small loads are quick and noisier: give them up to 6 times the runs.
            for round_index in range(max(1, repeats) * max(1, min(6, 30_000 // size))):
                names = list(variants)
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    times[name].append(_timed(variants[name]))
            # The fastest hand-written load over all rounds (a per-round minimum of several noisy
            # loads would favour the baseline), then paired with each variant round by round.
            fastest_hand = min(hands, key=lambda name: median(times[name]))
            best_per_round = times[fastest_hand]
            peaks = {name: _peak_memory(variants[name]) for name in (fastest_hand, JET)}
            for name in variants:
                result.add(f'{size:,}', name + (' (fastest hand)' if name == fastest_hand else ''),
                           ms(median(times[name])), f'{paired_ratio(times[name], best_per_round):.2f}x',
                           statements[name], mib(peaks[name]) if name in peaks else '')
            result.checks.append(Check(f'{database}, {size:,} ids: bridge.execute time / best hand',
                                       paired_ratio(times[JET], best_per_round), '<=', TARGET_RATIO))
            result.checks.append(Check(f'{database}, {size:,} ids: peak memory / {fastest_hand[len(HAND_PREFIX):]}',
                                       peaks[JET] / peaks[fastest_hand], '<=', MEMORY_TARGET))
            if size <= 10_000:
                result.checks.append(Check(f'{database}, {size:,} ids: statements',
                                           statements[JET], '<=', STATEMENT_LIMIT_10K, ''))
            result.raw[str(size)] = {'times_s': times, 'statements': statements, 'peak_bytes': peaks}
    result.notes.append(f'{rows:,}-row table; ids drawn at random, in random order; '
                        f'{max(1, repeats)} alternating timed runs per variant (up to 6x more for small n); '
                        '"/ best hand": median of per-round ratios to the hand-written load with the lowest median')
    result.notes.append('heap frozen (gc.freeze()) while timing' if frozen else
                        "the process's heap is live (not frozen), as a server's is: the collector's walks over it "
                        'during a load are part of the load')
    result.notes.append('peak memory: tracemalloc, in separate untimed runs of jet_sqla and of the fastest '
                        'hand-written load (tracemalloc slows Python down)')
    return result
