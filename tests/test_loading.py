"""Bulk loading by primary key: the statement form per database, request order, lock order, the paused collector."""

from __future__ import annotations

import gc
import random
import threading
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge, loading

from .conftest import Client, StatementLog
from .models import Document, Tag, User

N = 10_000


def add_users(engine: sa.Engine, count: int) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(User), [{'id': i, 'name': f'u{i}'} for i in range(1, count + 1)])


class TestStatements:
    def test_ten_thousand_ids_in_the_databases_form_and_in_request_order(
        self, bridge: Bridge, client: Client, engine: sa.Engine, statements: StatementLog,
    ) -> None:
        add_users(engine, N)
        seen: list[list[int]] = []

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            seen.append([user.id for user in users])

        ids = random.Random(16).sample(range(1, N + 1), N)
        with statements:
            result = client.execute('bulk', ids=','.join(map(str, ids)))
        assert result.status_code == 200, result.text
        assert seen == [ids]  # request order, not the database's
        selects = statements.selects()
        assert len(statements.statements) <= 20
        if engine.dialect.name == 'postgresql':
            (select,) = selects
            # One parameter: the integer keys as the array's text, cast by the server to the key's type.
            assert 'users.id = ANY (CAST(%(jet_sqla_ids)s::VARCHAR AS INTEGER[]))' in select
        elif engine.dialect.name in ('mysql', 'mariadb'):
            # Integer keys on MariaDB 10.6+: one JSON array parameter per chunk, read by JSON_TABLE.
            size = loading.chunk_size(engine.dialect)
            assert len(selects) == -(-N // size)
            assert all('JSON_TABLE(%(jet_sqla_ids)s' in select and select.count('%(') == 1 for select in selects)
        else:
            size = loading.chunk_size(engine.dialect)
            assert size >= 999 and len(selects) == -(-N // size)
            assert all(select.count('?' if engine.dialect.name == 'sqlite' else '%s') <= size for select in selects)

    def test_string_and_uuid_keys_load_in_request_order(self, bridge: Bridge, client: Client, engine: sa.Engine,
                                                        statements: StatementLog) -> None:
        codes = [f'tag-{i:04d}' for i in range(1_200)]
        keys = [uuid.UUID(int=i + 1) for i in range(1_200)]
        with Session(engine) as session, session.begin():
            session.add_all(Tag(code=code, title=code) for code in codes)
            session.flush()
            session.add_all(Document(id=key, headline='d', tag_code=codes[0]) for key in keys)
        got: dict[str, list[Any]] = {}

        @bridge.action(model=Tag, for_instance=True, bulk=True)
        def tags(records: list[Tag]) -> None:
            got['tags'] = [record.code for record in records]

        @bridge.action(model=Document, for_instance=True, bulk=True)
        def documents(records: list[Document]) -> None:
            got['documents'] = [record.id for record in records]

        wanted_codes = random.Random(1).sample(codes, len(codes))
        wanted_keys = random.Random(2).sample(keys, len(keys))
        with statements:
            assert client.execute('tags', ids=wanted_codes).status_code == 200
            assert client.execute('documents', ids=[str(key) for key in wanted_keys]).status_code == 200
        assert got == {'tags': wanted_codes, 'documents': wanted_keys}
        if engine.dialect.name == 'postgresql':
            assert len(statements.selects()) == 2
            # Keys that are not integers go as a typed array parameter, never written into a text.
            assert all('= ANY (%(jet_sqla_ids)s::' in select for select in statements.selects())

    def test_missing_ids_are_all_named(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 2_000)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            raise AssertionError('must not run')

        result = client.execute('bulk', ids=[2_500, *range(1, 2_001), 3_000])
        assert result.status_code == 404, result.text
        assert result.json['missing_ids'] == [2_500, 3_000]

    @pytest.mark.parametrize('raw', [['1', ' 2'], ['1', '2.0'], ['1', '١٢'], ['1', '1_000'], [1, True],
                                     ['1', '99999999999999999999']])
    def test_ids_the_fast_path_refuses_still_get_the_full_coercion(self, bridge: Bridge, raw: list[Any]) -> None:
        collection = bridge.catalog.get(User)
        try:
            expected: Any = [collection.coerce_id(value) for value in raw]
        except ValueError:
            expected = ValueError
        if expected is ValueError:
            with pytest.raises(Exception, match='invalid id'):
                collection.coerce_ids(raw)
        else:
            assert collection.coerce_ids(raw) == list(dict.fromkeys(expected))


def _locked_by_others(engine: sa.Engine) -> set[int]:
    """The user ids another transaction holds a row lock on, seen by skipping them."""
    with engine.connect() as connection:
        free = set(connection.scalars(sa.select(User.id).with_for_update(skip_locked=True)))
        connection.rollback()
    return set(range(1, N + 1)) - free


@pytest.mark.parametrize('dialect', ['mariadb'], indirect=True)
class TestJsonTableForm:
    """MariaDB: integer keys in one JSON parameter; the IN list where that form cannot serve."""

    def test_forms(self, engine: sa.Engine) -> None:
        with engine.connect():
            pass  # the dialect learns the server's version on the first connection
        integer, text = User.__table__.c.id, Tag.__table__.c.code
        assert loading.statement_form(engine.dialect, integer) == 'json'
        assert loading.statement_form(engine.dialect, integer, lock=True) == 'in'  # locks follow the IN scan
        assert loading.statement_form(engine.dialect, text) == 'in'

    def test_a_key_past_bigint_falls_back_to_the_in_list(self, engine: sa.Engine, statements: StatementLog) -> None:
        add_users(engine, 3)
        with Session(engine) as session, statements:
            found = dict(loading.iter_by_pk(session, User, 'id', User.__table__.c.id, [3, 2**63 + 7, 1]))
        assert sorted(found) == [1, 3]
        (select,) = statements.selects()
        assert 'JSON_TABLE' not in select and select.count('%(') == 3

    def test_missing_and_repeated_rows_in_one_chunk(self, engine: sa.Engine) -> None:
        add_users(engine, 10)
        with Session(engine) as session:
            found = [key for key, _ in loading.iter_by_pk(session, User, 'id', User.__table__.c.id, [9, 42, 2, -5])]
        assert sorted(found) == [2, 9]


@pytest.mark.parametrize('dialect', ['postgresql', 'mariadb'], indirect=True)
def test_locks_are_taken_in_pk_order_whatever_the_request_order(bridge: Bridge, client: Client,
                                                                 engine: sa.Engine) -> None:
    """A run that waits for a row has locked exactly the rows before it in pk order, across chunks."""
    add_users(engine, N)
    blocked_at = 7_001  # past the first chunk of an IN-list database

    @bridge.action(model=User, for_instance=True, bulk=True, lock=True)
    def locked(users: list[User]) -> dict[str, int]:
        return {'first': users[0].id}

    ids = list(range(N, 0, -1))  # descending: the wrong order, if the request's order were kept
    blocker = engine.connect()
    blocker.execute(sa.select(User.id).where(User.id == blocked_at).with_for_update())
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(client.execute('locked', ids=ids)))
    runner.start()
    try:
        expected = set(range(1, blocked_at + 1))  # the run's rows below the blocked one, and the blocker's
        deadline = time.monotonic() + 20
        locked_now: set[int] = set()
        while time.monotonic() < deadline:
            locked_now = _locked_by_others(engine)
            if len(locked_now) >= len(expected):
                break
            time.sleep(0.05)
        time.sleep(0.2)
        locked_now = _locked_by_others(engine)  # settled: the run waits on the blocked row
    finally:
        blocker.rollback()
        blocker.close()
        runner.join(30)
    assert locked_now == expected
    (result,) = results
    assert result.status_code == 200 and result.json == {'result': True, 'first': N}


@pytest.mark.usefixtures('collector_enabled')
class TestPausedCollector:
    def test_paused_during_a_large_load_only(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, loading.GC_PAUSE_MIN_IDS)
        during: list[bool] = []
        sa.event.listen(engine, 'before_cursor_execute',
                        lambda *args: during.append(gc.isenabled()) if 'FROM users' in args[2] else None)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None: ...

        assert client.execute('bulk', ids=list(range(1, loading.GC_PAUSE_MIN_IDS + 1))).status_code == 200
        assert during and not any(during)
        assert gc.isenabled()
        during.clear()
        assert client.execute('bulk', ids=[1, 2, 3]).status_code == 200  # small: not worth a pause
        assert during and all(during)

    def test_back_on_after_a_load_with_missing_ids(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 1_500)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None: ...

        result = client.execute('bulk', ids=list(range(1, 2_001)))
        assert result.status_code == 404
        assert gc.isenabled()

    def test_back_on_after_a_load_the_database_failed(self, bridge: Bridge, client: Client,
                                                       engine: sa.Engine) -> None:
        add_users(engine, 1_500)

        def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if 'FROM users' in statement:
                assert not gc.isenabled()
                raise sa.exc.OperationalError(statement, {}, Exception('the server went away'))

        sa.event.listen(engine, 'before_cursor_execute', fail)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None: ...

        result = client.execute('bulk', ids=list(range(1, 1_501)))
        assert result.status_code in (500, 503), result.text
        assert gc.isenabled()

    def test_left_off_when_the_application_turned_it_off(self, bridge: Bridge, client: Client,
                                                         engine: sa.Engine) -> None:
        add_users(engine, 1_500)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None: ...

        gc.disable()
        assert client.execute('bulk', ids=list(range(1, 1_501))).status_code == 200
        assert not gc.isenabled()

    def test_concurrent_pauses_resume_when_the_last_ends(self) -> None:
        first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
        observed: dict[str, bool] = {}

        def first() -> None:
            with loading.paused_gc():
                first_in.set()
                second_in.wait(5)
            first_out.set()

        def second() -> None:
            first_in.wait(5)
            with loading.paused_gc():
                second_in.set()
                first_out.wait(5)
                observed['after the first ended'] = gc.isenabled()
            observed['after both ended'] = gc.isenabled()

        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert observed == {'after the first ended': False, 'after both ended': True}

    def test_resumed_when_the_block_raises(self) -> None:
        with pytest.raises(RuntimeError), loading.paused_gc():
            assert not gc.isenabled()
            raise RuntimeError('the load failed')
        assert gc.isenabled()
