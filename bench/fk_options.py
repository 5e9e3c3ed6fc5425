"""3. Foreign-key options over a 1,000,000-row PostgreSQL table vs the same hand-written SELECT … LIMIT.

jet_sqla answers ``get_field_options`` for a foreign-key column with one
``SELECT pk, label … ORDER BY pk LIMIT 50``. The hand-written baseline runs
that same SELECT on a connection and fetches the rows (in a transaction, as
``engine.connect()`` does, and in autocommit mode, with no BEGIN and ROLLBACK
around it); jet_sqla also builds the options and encodes the JSON answer. The
target compares jet_sqla with the fastest hand-written variant of each round. Cases: the first
page, a search ``q``, a deep page (``offset`` at 90 % of the table), and the
same deep position reached by keyset paging (``after`` = the last key seen).
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from bench.payloads import BENCH_TOKEN, dumps
from bench.report import Check, Section, frozen_heap, median, ms, paired_ratio
from jet_sqla import Bridge
from jet_sqla.auth import Identity

TARGET_RATIO = 1.2
HANDS = ('hand: connection.execute', 'hand: connection, autocommit', 'hand: session.execute')
LIMIT = 50
SEARCH = '777'
MESSAGE = 'get_field_options'


class Base(DeclarativeBase):
    pass


class Label(Base):
    __tablename__ = 'bench_labels'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))


class Ticket(Base):
    __tablename__ = 'bench_tickets'
    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(sa.ForeignKey('bench_labels.id'))


def populate(engine: sa.Engine, rows: int) -> None:
    """(Re)create the tables; ``rows`` labels, made by the server itself."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO bench_labels (id, name) SELECT g, 'label ' || g FROM generate_series(1, :rows) AS g"
        ), {'rows': rows})
        connection.execute(sa.text('ANALYZE bench_labels'))


def cases(rows: int, search: str = SEARCH) -> dict[str, dict[str, Any]]:
    """The options requests, as the extra keys of get_field_options' params."""
    deep = rows * 9 // 10
    return {
        'first page': {},
        f'search q={search!r}': {'q': search},
        f'deep page offset={deep:,}': {'offset': deep},
        f'keyset after={deep:,}': {'after': deep},
    }


def hand_statement(query: Mapping[str, Any]) -> sa.Select[int, str]:
    """The SELECT a developer writes for the same page."""
    statement = sa.select(Label.id, Label.name).order_by(Label.id).limit(LIMIT).offset(query.get('offset', 0))
    if 'q' in query:
        statement = statement.where(Label.name.ilike(f'%{query["q"]}%'))
    if 'after' in query:
        statement = statement.where(Label.id > query['after'])
    return statement


def _per_call(call: Callable[[], Any], calls: int) -> float:
    gc.collect()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def explain(engine: sa.Engine, statement: sa.Select[int, str]) -> str:
    """What PostgreSQL did for ``statement``: rows its index scan read, and its execution time."""
    compiled = statement.compile(engine, compile_kwargs={'literal_binds': True})
    with engine.connect() as connection:
        plan = '\n'.join(row[0] for row in connection.execute(sa.text(f'EXPLAIN (ANALYZE, BUFFERS) {compiled}')))
    scanned = re.search(r'Index Scan.*?actual time=[\d.]+\.\.[\d.]+ rows=(\d+)', plan)
    executed = re.search(r'Execution Time: ([\d.]+) ms', plan)
    return (f'index scan read {int(scanned.group(1)):,} rows' if scanned else 'no index scan') + (
        f', executed in {float(executed.group(1)):.1f} ms' if executed else '')


def run(engine: sa.Engine, rows: int, *, rounds: int, search: str = SEARCH) -> Section:
    """Time every case through jet_sqla (dispatcher and HTTP) and by hand, in turns."""
    populate(engine, rows)
    bridge = Bridge(Base, engine=engine, token=BENCH_TOKEN)
    http = testing.TestClient(bridge.wsgi_app())
    headers = {'Authorization': f'Bearer {BENCH_TOKEN}', 'Content-Type': 'application/json'}
    identity = Identity()
    result = Section(
        f'Foreign-key options over {rows:,} rows on PostgreSQL vs the hand-written SELECT … LIMIT {LIMIT}',
        ['case', 'variant', 'median per call', '/ best hand', 'PostgreSQL'],
    )
    per_case: dict[str, dict[str, float]] = {}
    with frozen_heap():
        for case, extra in cases(rows, search).items():
            params = {'model': Ticket.__tablename__, 'field': 'label_id', **extra}
            body = dumps({'name': MESSAGE, 'params': params})
            statement = hand_statement(extra)
            expected = len(bridge.dispatcher.dispatch(MESSAGE, params, identity))

            def by_connection(statement: sa.Select[int, str] = statement) -> Any:
                with engine.connect() as connection:
                    return connection.execute(statement).all()

            def by_autocommit(statement: sa.Select[int, str] = statement) -> Any:
                with engine.connect() as connection:
                    connection.execution_options(isolation_level='AUTOCOMMIT')
                    return connection.execute(statement).all()

            def by_session(statement: sa.Select[int, str] = statement) -> Any:
                with Session(engine) as session:
                    return session.execute(statement).all()

            def through_http(body: bytes = body, expected: int = expected, case: str = case) -> None:
                response = http.simulate_post('/api/messages/', body=body, headers=headers)
                if response.status_code != 200 or len(response.content) != expected:
                    raise RuntimeError(f'{MESSAGE} {case}: {response.status_code} {response.text[:200]}')

            def by_dispatcher(params: dict[str, Any] = params) -> bytes:
                return bridge.dispatcher.dispatch(MESSAGE, params, identity)

            variants: dict[str, Callable[[], Any]] = {
                'hand: connection.execute': by_connection,
                'hand: connection, autocommit': by_autocommit,
                'hand: session.execute': by_session,
                'jet_sqla: dispatcher': by_dispatcher,
                'jet_sqla: HTTP (falcon.testing)': through_http,
            }
            if len(by_connection()) != LIMIT:
                raise RuntimeError(f'{case}: the hand-written query found fewer than {LIMIT} rows')
            first = _per_call(by_connection, 1)
            calls = max(1, min(100, int(0.1 / max(first, 1e-6))))  # about 100 ms of calls per measurement
            times: dict[str, list[float]] = {name: [] for name in variants}
            for round_index in range(max(1, rounds)):
                names = list(variants)
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    times[name].append(_per_call(variants[name], calls))
            plan = explain(engine, statement)
            # The fastest hand-written variant over all rounds (a per-round minimum of several noisy
            # variants would favour the baseline), then paired with jet_sqla round by round.
            hand = times[min(HANDS, key=lambda name: median(times[name]))]
            for name in variants:
                result.add(case, name, ms(median(times[name])), f'{paired_ratio(times[name], hand):.2f}x',
                           plan if name == 'hand: connection.execute' else '')
            per_case[case] = {name: median(values) for name, values in times.items()}
            if 'offset' not in extra:
                result.checks.append(Check(f'{case}: jet_sqla dispatcher / best hand', paired_ratio(
                    times['jet_sqla: dispatcher'], hand), '<=', TARGET_RATIO))
            result.raw[case] = times
    deep, keyset = list(per_case)[2:4]
    result.notes.append(
        f'the deep page costs {per_case[deep]["jet_sqla: dispatcher"] / per_case[keyset]["jet_sqla: dispatcher"]:.0f}x '
        f'the keyset page at the same position: OFFSET makes PostgreSQL walk and discard every earlier index '
        f'entry, while `after` starts the index scan at the key'
    )
    result.notes.append(f'{max(1, rounds)} alternating rounds per case, each timing a batch of calls; '
                        'medians of per-round ratios to the fastest hand-written variant of the round')
    return result
