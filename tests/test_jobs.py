"""Background actions in the embedded mode (no broker): accepting, chunking, progress, failures, cancel, resume.

These run on SQLite, PostgreSQL and MariaDB in the process itself; the Celery
legs, with real worker processes, are in test_jobs_celery.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import ActionContext, ActionError, Bridge, migrations
from jet_sqla.jobs import chunk_table, job_table

from .conftest import AUTH
from .conftest import Client as PlainClient
from .jobs_helpers import add_counters, counter_values, state_of, wait_for_job
from .models import Counter, User


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    from .conftest import fresh_engine

    engine = fresh_engine(db_url)
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


class Client(PlainClient):
    """Errors as RFC 9457 problem details, whose ``code`` and ``fields`` these tests read."""

    def __init__(self, bridge: Bridge) -> None:
        super().__init__(bridge, headers={**AUTH, 'Accept': 'application/problem+json'})


@pytest.fixture
def client(bridge: Bridge) -> Client:
    return Client(bridge)


def job_rows(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).select_from(job_table)) or 0


class TestRunning:
    def test_chunks_in_pk_order_each_in_its_transaction(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 1050)
        seen: list[list[int]] = []

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=100)
        def bump(counters: list[Counter], step: int, ctx: ActionContext) -> None:
            seen.append([counter.id for counter in counters])
            assert ctx.ids == seen[-1]
            for counter in counters:
                counter.value += step

        ids = list(range(1050, 0, -1))
        result = client.execute('bump', ids=ids, step=2)
        assert result.status_code == 200, result.text
        assert set(result.json) == {'result', 'job', 'total', 'chunks'}
        assert result.json['result'] is True and result.json['total'] == 1050 and result.json['chunks'] == 11
        state = wait_for_job(state_of(client), result.json['job'])
        assert state['status'] == 'succeeded'
        assert (state['done'], state['failed'], state['errors'], state['total']) == (1050, 0, [], 1050)
        assert state['action'] == 'bump' and state['collection'] == 'counters'
        assert state['created_at'] <= state['started_at'] <= state['finished_at']
        assert set(state) == {'job', 'action', 'collection', 'status', 'total', 'done', 'failed', 'errors',
                              'created_at', 'started_at', 'finished_at'}
        import jsonschema

        from jet_sqla.openapi import build_document

        jsonschema.validate(state, build_document()['components']['schemas']['JobState'])  # as documented
        assert counter_values(engine) == {i: 2 for i in range(1, 1051)}
        assert sorted(len(chunk) for chunk in seen) == [50] + [100] * 10
        assert all(chunk == sorted(chunk) for chunk in seen)
        assert sorted(id_ for chunk in seen for id_ in chunk) == list(range(1, 1051))

    def test_answers_before_the_action_has_run(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 3)
        release = threading.Event()

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True)
        def slow(counters: list[Counter]) -> None:
            assert release.wait(10)
            for counter in counters:
                counter.value += 1

        result = client.execute('slow', ids=[1, 2, 3])
        assert result.status_code == 200
        state = state_of(client)(result.json['job'])
        assert state['status'] in ('queued', 'running') and state['done'] == 0
        assert counter_values(engine) == {1: 0, 2: 0, 3: 0}  # progress is never ahead of the commits
        release.set()
        assert wait_for_job(state_of(client), result.json['job'])['done'] == 3
        assert counter_values(engine) == {1: 1, 2: 1, 3: 1}

    def test_a_collection_action_runs_once_in_the_background(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 4)

        @bridge.action(model=Counter, background=True)
        def reset_all(session: Session) -> None:
            session.execute(sa.update(Counter).values(value=7))

        result = client.execute('reset_all')
        assert result.status_code == 200
        assert (result.json['total'], result.json['chunks']) == (0, 1)
        assert wait_for_job(state_of(client), result.json['job'])['status'] == 'succeeded'
        assert set(counter_values(engine).values()) == {7}

    def test_a_common_action_runs_once_in_the_background(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 2)
        runs: list[str | None] = []

        @bridge.action(background=True)
        def recount(ctx: ActionContext) -> dict[str, int]:
            runs.append(ctx.collection)
            ctx.session.execute(sa.update(Counter).values(value=Counter.value + 5))
            return {'ignored': 1}

        accepted = client.execute('recount')
        assert accepted.status_code == 200 and (accepted.json['total'], accepted.json['chunks']) == (0, 1)
        state = wait_for_job(state_of(client), accepted.json['job'])
        assert (state['status'], state['collection']) == ('succeeded', None)
        assert runs == [None] and set(counter_values(engine).values()) == {5}

    def test_max_ids_does_not_cap_a_background_run_but_max_job_ids_does(
        self, make_bridge: Callable[..., Bridge], engine: sa.Engine
    ) -> None:
        bridge = make_bridge(max_ids=10, max_job_ids=40)
        add_counters(engine, 50)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=7)
        def bump(counters: list[Counter]) -> None:
            for counter in counters:
                counter.value += 1

        client = Client(bridge)
        accepted = client.execute('bump', ids=list(range(1, 41)))
        assert accepted.status_code == 200 and accepted.json['chunks'] == 6
        refused = client.execute('bump', ids=list(range(1, 42)))
        assert refused.status_code == 413, refused.text
        wait_for_job(state_of(client), accepted.json['job'])
        assert sum(counter_values(engine).values()) == 40
        assert job_rows(engine) == 1

    def test_a_redelivered_chunk_that_is_done_is_skipped(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 10)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=5)
        def bump(counters: list[Counter]) -> None:
            for counter in counters:
                counter.value += 1

        job = client.execute('bump', ids=list(range(1, 11))).json['job']
        wait_for_job(state_of(client), job)
        assert bridge.jobs.run_chunk(job, 0) == 'skipped'
        assert bridge.jobs.run_chunk(job, 1) == 'skipped'
        assert set(counter_values(engine).values()) == {1}

    def test_an_idempotency_key_answers_the_same_job(self, make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
        bridge = make_bridge(audit=True)
        add_counters(engine, 4)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True)
        def bump(counters: list[Counter]) -> None:
            for counter in counters:
                counter.value += 1

        client = Client(bridge)
        first = client.execute('bump', ids=[1, 2, 3, 4], idempotency_key='k-1')
        again = client.execute('bump', ids=[1, 2, 3, 4], idempotency_key='k-1')
        assert first.status_code == again.status_code == 200
        assert first.json == again.json
        wait_for_job(state_of(client), first.json['job'])
        assert job_rows(engine) == 1 and set(counter_values(engine).values()) == {1}


class TestFailures:
    def test_a_raising_chunk_is_rolled_back_whole_and_the_job_goes_on(
        self, bridge: Bridge, client: Client, engine: sa.Engine
    ) -> None:
        add_counters(engine, 40)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
        def bump(counters: list[Counter]) -> None:
            for counter in counters:
                counter.value += 1
                if counter.id == 15:
                    raise ActionError('fifteen is cursed')

        job = client.execute('bump', ids=list(range(1, 41))).json['job']
        state = wait_for_job(state_of(client), job)
        assert state['status'] == 'failed'
        assert (state['done'], state['failed']) == (30, 10)
        assert state['errors'] == [{'first_id': 11, 'last_id': 20, 'message': 'fifteen is cursed'}]
        values = counter_values(engine)
        assert [values[i] for i in range(11, 21)] == [0] * 10
        assert [i for i, value in values.items() if value == 1] == list(range(1, 11)) + list(range(21, 41))

    def test_an_unexpected_exception_is_a_failed_chunk_with_a_generic_message(
        self, bridge: Bridge, client: Client, engine: sa.Engine
    ) -> None:
        add_counters(engine, 2)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=1)
        def crash(counters: list[Counter]) -> None:
            if counters[0].id == 2:
                raise RuntimeError('secret internals')

        state = wait_for_job(state_of(client), client.execute('crash', ids=[1, 2]).json['job'])
        assert state['status'] == 'failed' and state['done'] == 1 and state['failed'] == 1
        assert 'secret' not in state['errors'][0]['message']
        assert state['errors'][0]['first_id'] == state['errors'][0]['last_id'] == 2

    def test_errors_list_at_most_100_chunks(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 105)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=1)
        def refuse(counters: list[Counter]) -> None:
            raise ActionError(f'no {counters[0].id}')

        state = wait_for_job(state_of(client), client.execute('refuse', ids=list(range(1, 106))).json['job'])
        assert state['failed'] == 105 and len(state['errors']) == 100
        assert state['errors'][0] == {'first_id': 1, 'last_id': 1, 'message': 'no 1'}


class TestAccepting:
    """Every 4xx an in-request run gives comes back synchronously, and nothing is queued."""

    @pytest.fixture
    def declared(self, bridge: Bridge, engine: sa.Engine) -> Bridge:
        add_counters(engine, 5)
        with Session(engine) as session, session.begin():
            session.add(User(id=1, name='ann'))

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True,
                       allow=lambda actor: actor is not None)
        def guarded(counters: list[Counter]) -> None:
            raise AssertionError('must not run')

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True)
        def bump(counters: list[Counter], step: int, owner: User | None = None) -> None:
            raise AssertionError('must not run')

        return bridge

    @pytest.mark.parametrize(('action', 'form', 'status', 'code'), [
        ('bump', {'ids': [1, 2, 99], 'step': 1}, 404, 'records_not_found'),
        ('bump', {'ids': [1, 2], 'step': 'many'}, 400, 'invalid_params'),
        ('bump', {'ids': [1, 2]}, 400, 'invalid_params'),
        ('bump', {'ids': [1], 'step': 1, 'owner': 42}, 400, 'invalid_params'),
        ('bump', {'ids': ['x'], 'step': 1}, 400, 'invalid_params'),
        ('bump', {'step': 1}, 400, 'invalid_params'),
        ('guarded', {'ids': [1]}, 403, 'forbidden'),
    ])
    def test_refused_before_anything_is_queued(
        self, declared: Bridge, engine: sa.Engine, action: str, form: dict[str, Any], status: int, code: str
    ) -> None:
        result = Client(declared).execute(action, **form)
        assert result.status_code == status, result.text
        assert result.json['code'] == code
        assert job_rows(engine) == 0

    def test_a_bridge_with_background_actions_refuses_to_start_without_its_tables(
        self, make_bridge: Callable[..., Bridge], engine: sa.Engine
    ) -> None:
        migrations.downgrade(engine, 'jet_sqla_0001')
        bridge = make_bridge()

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True)
        def bump(counters: list[Counter]) -> None: ...

        with pytest.raises(RuntimeError, match=r'jet_sqla_job.*jet-sqla db upgrade'):
            bridge.wsgi_app()

    def test_chunk_size_needs_background_and_a_positive_size(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match='background=True'):
            bridge.action(model=Counter, for_instance=True, bulk=True, chunk_size=10)(lambda counters: None)
        with pytest.raises(ValueError, match='positive'):
            bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=0)(
                lambda counters: None)


class TestMessages:
    @pytest.mark.parametrize('job', [None, 7, '', 'not-a-job', 'A' * 32, '0' * 31])
    def test_a_malformed_job_id_is_a_400(self, client: Client, job: Any) -> None:
        for message in ('get_job', 'cancel_job'):
            result = client.message(message, {} if job is None else {'job': job})
            assert result.status_code == 400, result.text
            assert result.json['code'] == 'invalid_params' and 'job' in result.json['fields']

    def test_an_unknown_job_is_a_404(self, client: Client) -> None:
        for message in ('get_job', 'cancel_job'):
            result = client.message(message, {'job': '0' * 32})
            assert result.status_code == 404, result.text
            assert result.json['code'] == 'not_found'

    def test_cancel_stops_the_chunks_not_started_and_lets_the_running_one_finish(
        self, make_bridge: Callable[..., Bridge], engine: sa.Engine
    ) -> None:
        bridge = make_bridge(job_threads=1)
        add_counters(engine, 30)
        started, release = threading.Event(), threading.Event()

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
        def bump(counters: list[Counter]) -> None:
            started.set()
            assert release.wait(10)
            for counter in counters:
                counter.value += 1

        client = Client(bridge)
        job = client.execute('bump', ids=list(range(1, 31))).json['job']
        assert started.wait(10)
        cancelled = client.message('cancel_job', {'job': job})
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json['status'] == 'cancelled' and cancelled.json['finished_at'] is not None
        release.set()
        wait_for_job(state_of(client), job, until=('cancelled',))
        # The running chunk finishes; the two others never start.
        deadline_state = _wait_chunks_settled(engine, job)
        assert deadline_state == {'done': 1, 'cancelled': 2}
        assert sorted(counter_values(engine).values()) == [0] * 20 + [1] * 10
        assert state_of(client)(job)['done'] == 10
        again = client.message('cancel_job', {'job': job})
        assert again.status_code == 200 and again.json['status'] == 'cancelled'

    def test_a_finished_job_cannot_be_cancelled(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 2)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True)
        def bump(counters: list[Counter]) -> None: ...

        job = client.execute('bump', ids=[1, 2]).json['job']
        wait_for_job(state_of(client), job)
        result = client.message('cancel_job', {'job': job})
        assert result.status_code == 409 and 'finished' in result.json['detail']

    def test_who_may_read_and_who_may_cancel(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 2)
        release = threading.Event()

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True,
                       allow=lambda actor: actor is not None and actor.get('user') == 1)
        def bump(counters: list[Counter]) -> None:
            release.wait(10)

        client.http  # noqa: B018 - builds the app, which starts the runner on the first message
        job = bridge.execute('bump', params={'ids': [1, 2]}, actor={'user': 1})['job']
        # A shared-token caller may list actions, so may read the job, but may not run bump: no cancelling.
        assert client.message('get_job', {'job': job}).status_code == 200
        refused = client.message('cancel_job', {'job': job})
        assert refused.status_code == 403, refused.text
        release.set()
        assert wait_for_job(state_of(client), job)['status'] == 'succeeded'


def _wait_chunks_settled(engine: sa.Engine, job: str) -> dict[str, int]:
    import time

    deadline = time.monotonic() + 20
    while True:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(chunk_table.c.status, sa.func.count()).where(chunk_table.c.job_id == job)
                .group_by(chunk_table.c.status)
            ).all()
        statuses = {row[0]: row[1] for row in rows}
        if 'queued' not in statuses or time.monotonic() > deadline:
            return statuses
        time.sleep(0.05)


def test_a_job_left_unfinished_by_a_restart_resumes(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
    add_counters(engine, 20)

    def declare(bridge: Bridge) -> None:
        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=5)
        def bump(counters: list[Counter]) -> None:
            for counter in counters:
                counter.value += 1

    first = make_bridge()
    declare(first)
    # The process dies after the job's COMMIT and before any chunk ran.
    first.jobs.runner.publish = _die  # type: ignore[method-assign]
    job = first.execute('bump', params={'ids': list(range(1, 21))})['job']
    assert set(counter_values(engine).values()) == {0}

    second = make_bridge()
    declare(second)
    state = wait_for_job(state_of(Client(second)), job)
    assert state['status'] == 'succeeded' and state['done'] == 20
    assert set(counter_values(engine).values()) == {1}


def _die(receipt: Any) -> None:
    raise SystemError('the serving process died before publishing')


class TestSelectAll:
    """``inverseIds``: every record but the listed ones, chunked by primary-key ranges."""

    def test_all_but_these_runs_every_other_record_once(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_counters(engine, 1234)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=100)
        def bump(counters: list[Counter]) -> None:
            for counter in counters:
                counter.value += 1

        accepted = client.message('execute_action', {'name': 'bump', 'ids': [5, 600, 1234], 'inverseIds': True})
        assert accepted.status_code == 200, accepted.text
        assert (accepted.json['total'], accepted.json['chunks']) == (1231, 13)
        state = wait_for_job(state_of(client), accepted.json['job'])
        assert (state['status'], state['done'], state['total']) == ('succeeded', 1231, 1231)
        values = counter_values(engine)
        assert [key for key, value in values.items() if value == 0] == [5, 600, 1234]
        assert {value for key, value in values.items() if key not in (5, 600, 1234)} == {1}

    def test_accepting_reads_keys_only_in_a_few_statements(
        self, make_bridge: Callable[..., Bridge], engine: sa.Engine
    ) -> None:
        from .conftest import StatementLog

        add_counters(engine, 5000)
        bridge = make_bridge()

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
        def bump(counters: list[Counter]) -> None: ...

        published: list[Any] = []
        bridge.jobs.runner.publish = published.append  # type: ignore[method-assign]
        log = StatementLog(engine)
        with log:
            receipt = bridge.execute('bump', params={'ids': []}, inverse=True)
        assert (receipt['total'], receipt['chunks']) == (5000, 500) and published
        selects = log.selects()
        assert len(log.statements) <= 10, log.statements  # not one per chunk
        assert not any('value' in statement.split('FROM')[0] for statement in selects), selects  # no instances

    def test_refusals(self, make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
        add_counters(engine, 30)
        bridge = make_bridge(max_job_ids=20)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True)
        def bump(counters: list[Counter]) -> None: ...

        @bridge.action(model=Counter, for_instance=True, background=True)
        def one(counter: Counter) -> None: ...

        client = Client(bridge)
        too_many = client.message('execute_action', {'name': 'bump', 'ids': [1], 'inverseIds': True})
        assert too_many.status_code == 413 and '29' in too_many.json['detail']
        not_bulk = client.message('execute_action', {'name': 'one', 'ids': [1], 'inverseIds': 'true'})
        assert not_bulk.status_code == 400 and 'inverseIds' in not_bulk.json['fields']
        with engine.begin() as connection:
            connection.execute(sa.delete(Counter).where(Counter.id > 2))
        nothing = client.message('execute_action', {'name': 'bump', 'ids': [1, 2], 'inverseIds': True})
        assert nothing.status_code == 400 and 'ids' in nothing.json['fields']
        assert job_rows(engine) == 0


class TestAsInRequest:
    """Form values, foreign-key params, lock=, timeout= and the audit log work per chunk as for a request."""

    def test_foreign_key_param_lock_and_timeout_in_every_chunk(
        self, bridge: Bridge, client: Client, engine: sa.Engine
    ) -> None:
        add_counters(engine, 9)
        with Session(engine) as session, session.begin():
            session.add(User(id=7, name='owner'))
        seen: list[tuple[str, list[int]]] = []

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=4,
                       lock=True, timeout=5)
        def stamp(counters: list[Counter], owner: User, step: int, ctx: ActionContext) -> None:
            seen.append((owner.name, ctx.ids))
            assert ctx.params == {'owner': 7, 'step': 3} and ctx.collection == 'counters'
            for counter in counters:
                counter.value += step

        state = wait_for_job(state_of(client), client.execute('stamp', ids=list(range(1, 10)), owner=7, step=3).json['job'])
        assert state['status'] == 'succeeded'
        assert sorted(seen) == [('owner', [1, 2, 3, 4]), ('owner', [5, 6, 7, 8]), ('owner', [9])]
        assert set(counter_values(engine).values()) == {3}

    def test_the_audit_log_has_a_row_per_chunk(self, make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
        from jet_sqla.audit import action_log

        bridge = make_bridge(audit=True)
        add_counters(engine, 6)

        @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=3)
        def bump(counters: list[Counter]) -> None:
            if counters[0].id == 4:
                raise ActionError('not these')
            for counter in counters:
                counter.value += 1

        client = Client(bridge)
        wait_for_job(state_of(client), client.execute('bump', ids=[1, 2, 3, 4, 5, 6]).json['job'])
        with engine.connect() as connection:
            rows = connection.execute(sa.select(action_log.c.outcome, action_log.c.ids, action_log.c.error)
                                      .where(action_log.c.action == 'bump').order_by(action_log.c.id)).all()
        assert sorted((row.outcome, row.ids, row.error) for row in rows) == [
            ('error', '["4","5","6"]', 'not these'), ('success', '["1","2","3"]', None)]


def test_accepting_listed_ids_checks_them_in_far_fewer_statements_than_chunks(
    make_bridge: Callable[..., Bridge], engine: sa.Engine
) -> None:
    from .conftest import StatementLog

    add_counters(engine, 12_000)
    bridge = make_bridge()

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
    def bump(counters: list[Counter]) -> None: ...

    bridge.jobs.runner.publish = lambda receipt: None  # type: ignore[method-assign]
    log = StatementLog(engine)
    with log:
        receipt = bridge.execute('bump', params={'ids': list(range(1, 12_001))})
    assert (receipt['total'], receipt['chunks']) == (12_000, 1_200)
    assert len(log.selects()) == 2, log.selects()  # two key lookups of 10,000 and 2,000, not 1,200
    assert not any('value' in statement.split('FROM')[0] for statement in log.selects())


def test_a_chunk_that_cannot_reach_the_database_is_to_be_delivered_again_not_failed() -> None:
    from jet_sqla.errors import DatabaseUnavailable

    from .models import Base

    closed = sa.create_engine('postgresql+psycopg://postgres@127.0.0.1:1/none', connect_args={'connect_timeout': 2})
    bridge = Bridge(Base, engine=closed, token='t')

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True)
    def bump(counters: list[Counter]) -> None: ...

    # The Celery task retries on this error, and the embedded runner tries again later.
    with pytest.raises(DatabaseUnavailable):
        bridge.jobs.run_chunk('0' * 32, 0)


def test_get_job_on_a_database_without_the_job_tables_is_a_404(make_bridge: Callable[..., Bridge],
                                                              engine: sa.Engine) -> None:
    migrations.downgrade(engine, 'base')
    client = Client(make_bridge())  # no background action: the bridge starts without the tables
    for message in ('get_job', 'cancel_job'):
        result = client.message(message, {'job': 'a' * 32})
        assert result.status_code == 404, result.text
        assert 'no job tables' in result.json['detail']


def test_the_core_never_imports_celery() -> None:
    """Celery is an optional extra: building and serving bridges, with or without a broker, leaves it unimported."""
    import subprocess
    import sys

    code = '''
import sys, sqlalchemy as sa
import jet_sqla, jet_sqla.cli, jet_sqla.jobs
from tests.models import Base, Counter
for broker in (None, 'redis://127.0.0.1:6379/11'):
    bridge = jet_sqla.Bridge(Base, engine=sa.create_engine('sqlite://'), token='t', broker=broker)
    bridge.action(model=Counter, for_instance=True, bulk=True, background=True)(lambda counters: None)
    jet_sqla.migrations.upgrade(bridge.engine)
    bridge.wsgi_app()
print(sorted(name for name in ('celery', 'kombu') if name in sys.modules))
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, check=False,
                            cwd=str(__import__('pathlib').Path(__file__).resolve().parents[1]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


class TestRunsOfChunks:
    """How a job's chunks are grouped into Celery tasks: runs of consecutive chunks, each still its own chunk."""

    def test_a_big_job_is_published_as_runs_of_about_task_records_records(self) -> None:
        from jet_sqla.jobs.runner import group_runs

        runs = group_runs([(seq, 500) for seq in range(2000)], task_records=10_000, min_tasks=16)
        assert len(runs) == 100 and all(len(run) == 20 for run in runs)
        assert [seq for run in runs for seq in run] == list(range(2000))  # every chunk once, in order

    def test_a_small_job_still_spreads_over_at_least_min_tasks_tasks(self) -> None:
        from jet_sqla.jobs.runner import group_runs

        runs = group_runs([(seq, 500) for seq in range(40)], task_records=10_000, min_tasks=16)
        assert [len(run) for run in runs] == [3] * 13 + [1]
        assert group_runs([(0, 500), (1, 500)], task_records=10_000, min_tasks=16) == [[0], [1]]

    def test_a_chunk_bigger_than_task_records_is_a_task_of_its_own(self) -> None:
        from jet_sqla.jobs.runner import group_runs

        assert group_runs([(0, 50_000), (1, 50_000), (4, 3)], task_records=10_000, min_tasks=1) == [[0], [1], [4]]

    def test_only_the_chunks_still_queued_are_grouped(self) -> None:
        from jet_sqla.jobs.runner import group_runs

        assert group_runs([(2, 100), (3, 100), (7, 100)], task_records=250, min_tasks=1) == [[2, 3, 7]]
        assert group_runs([], task_records=10_000) == []
