"""Selections: listed ids and "select all but these", counted and paged in SQL on every database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge
from jet_sqla.selection import Selection

from .conftest import StatementLog
from .models import Counter, Tag


def add_counters(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        # Inserted out of order, so that primary-key order is something the reads must produce.
        session.add_all(Counter(id=i, value=i) for i in sorted(range(1, count + 1), key=lambda i: (i * 7919) % count))


def selection(bridge: Bridge, ids: list[int], inverse: bool) -> Selection:
    return Selection(bridge.catalog.get('counters'), ids, inverse=inverse)


def test_inverse_selection_counts_and_pages_every_record_but_the_listed(bridge: Bridge, engine: sa.Engine,
                                                                        statements: StatementLog) -> None:
    add_counters(engine, 57)
    chosen = selection(bridge, [5, 3, 40, 999], inverse=True)  # 999 does not exist: it excludes nothing
    with Session(engine) as session:
        assert chosen.count(session) == 54
        with statements:
            chunks = list(chosen.iter_pk_chunks(session, chunk_size=10))
    assert [value for chunk in chunks for value in chunk] == [i for i in range(1, 58) if i not in (3, 5, 40)]
    assert all(0 < len(chunk) <= 10 for chunk in chunks)
    # Keyset pages: ceil(57 / 10) = 6 pages, each a bounded statement; nothing built from the whole table.
    assert len(statements.selects()) == 6
    assert not any('NOT IN' in statement.upper() for statement in statements.statements)
    assert all('LIMIT' in statement.upper() for statement in statements.selects())


def test_inverse_selection_with_no_ids_is_the_whole_collection(bridge: Bridge, engine: sa.Engine) -> None:
    add_counters(engine, 12)
    chosen = selection(bridge, [], inverse=True)
    with Session(engine) as session:
        assert chosen.count(session) == 12
        assert [c for chunk in chosen.iter_pk_chunks(session, chunk_size=5) for c in chunk] == list(range(1, 13))
        instances = [i for chunk in chosen.iter_instance_chunks(session, chunk_size=5) for i in chunk]
    assert [counter.id for counter in instances] == list(range(1, 13))
    assert all(isinstance(counter, Counter) and counter.value == counter.id for counter in instances)


def test_an_exact_multiple_of_the_chunk_size_ends_with_one_empty_page(bridge: Bridge, engine: sa.Engine,
                                                                      statements: StatementLog) -> None:
    add_counters(engine, 20)
    chosen = selection(bridge, [20], inverse=True)
    with Session(engine) as session, statements:
        chunks = list(chosen.iter_instance_chunks(session, chunk_size=10))
    assert [[c.id for c in chunk] for chunk in chunks] == [list(range(1, 11)), list(range(11, 20))]
    assert len(statements.selects()) == 3  # two full pages, then the empty one that proves the end


def test_listed_selection_counts_existing_ids_and_reports_the_missing(bridge: Bridge, engine: sa.Engine,
                                                                      statements: StatementLog) -> None:
    add_counters(engine, 30)
    chosen = selection(bridge, [25, 3, 3, 31, 7, 0], inverse=False)
    assert chosen.ids == (25, 3, 31, 7, 0)
    with Session(engine) as session:
        assert chosen.count(session) == 3
        assert chosen.missing(session) == [31, 0]
        with statements:
            chunks = list(chosen.iter_pk_chunks(session, chunk_size=2))
            instances = [c.id for chunk in chosen.iter_instance_chunks(session, chunk_size=2) for c in chunk]
    assert chunks == [[3], [7, 25]]  # sorted (0, 3 | 7, 25 | 31), chunked by listed ids; empty chunks not yielded
    assert instances == [3, 7, 25]
    assert len(statements.selects()) == 6  # one per chunk of listed ids, per pass


def test_counting_a_large_listed_exclusion_uses_bounded_statements(bridge: Bridge, engine: sa.Engine,
                                                                   statements: StatementLog) -> None:
    add_counters(engine, 1200)
    excluded = list(range(2, 1201, 2))  # 600 ids: more than one IN chunk
    chosen = selection(bridge, excluded, inverse=True)
    with Session(engine) as session, statements:
        assert chosen.count(session) == 600
    assert len(statements.selects()) == 3  # the table's count(*), and two IN chunks of at most 500
    assert not any('NOT IN' in statement.upper() for statement in statements.statements)


def test_string_keys_follow_the_databases_order_for_an_inverse_selection(bridge: Bridge, engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(Tag(code=code, title=code) for code in ['m', 'b', 'z', 'a', 'q'])
    chosen = Selection(bridge.catalog.get('tags'), ['q'], inverse=True)
    with Session(engine) as session:
        codes = [code for chunk in chosen.iter_pk_chunks(session, chunk_size=2) for code in chunk]
        with session.connection() as connection:
            assert chosen.count(connection) == 4
    assert codes == ['a', 'b', 'm', 'z']


@pytest.mark.parametrize('dialect', ['postgresql', 'mariadb'])  # SQLite has no row locks
def test_a_locked_inverse_read_holds_the_rows(bridge: Bridge, engine: sa.Engine, dialect: str) -> None:
    add_counters(engine, 6)
    chosen = selection(bridge, [2], inverse=True)
    with Session(engine) as session, session.begin():
        loaded = [c.id for chunk in chosen.iter_instance_chunks(session, chunk_size=4, lock=True) for c in chunk]
        assert loaded == [1, 3, 4, 5, 6]
        other = engine.connect()
        try:
            if dialect == 'postgresql':
                other.execute(sa.text("SET lock_timeout = '200ms'"))
            else:
                other.execute(sa.text('SET SESSION innodb_lock_wait_timeout = 1'))
            with pytest.raises(sa.exc.OperationalError):
                other.execute(sa.text('UPDATE counters SET value = 0 WHERE id = 5'))
        finally:
            other.close()


def test_a_chunk_size_below_one_is_refused(bridge: Bridge) -> None:
    chosen = selection(bridge, [1], inverse=True)
    with pytest.raises(ValueError):
        next(chosen.iter_pk_chunks(None, chunk_size=0))  # type: ignore[arg-type]
