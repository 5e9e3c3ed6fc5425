"""The action log and idempotent runs, on real databases.

A success's row commits with the action or not at all; a failure's row is
written after the rollback; a key runs its action once, even when two
requests carrying it arrive together.
"""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import falcon
import pytest
import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import Session

from jet_sqla import ActionContext, ActionError, Bridge, migrations
from jet_sqla.audit import REDACTED, action_log, redact

from . import models
from .apps import cli_apps
from .apps.cli_server import serving
from .conftest import AUTH, TOKEN, Client, database_url, fresh_engine
from .error_body import error_code, error_message
from .models import Counter, Tier, User

RowDicts = list[dict[str, Any]]


def log_rows(engine: sa.Engine) -> RowDicts:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(action_log).order_by(action_log.c.id))]


def without_run(answer: dict[str, Any]) -> dict[str, Any]:
    """An audited run's answer without its log id (``run``), which it always carries."""
    assert isinstance(answer.get('run'), int), answer
    return {key: value for key, value in answer.items() if key != 'run'}


def add_user(engine: sa.Engine, user_id: int = 1, name: str = 'Ada', tier: Tier = Tier.BRONZE) -> None:
    with Session(engine) as session, session.begin():
        session.add(User(id=user_id, name=name, tier=tier))


def user_name(engine: sa.Engine, user_id: int = 1) -> str:
    with Session(engine) as session:
        return session.get_one(User, user_id).name


def migrated(url: str) -> sa.Engine:
    engine = fresh_engine(url)
    migrations.upgrade(engine)
    return engine


@pytest.fixture
def audited(engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> Bridge:
    """An audited bridge over a database migrated with jet_sqla's own scripts, with one user."""
    migrations.upgrade(engine)
    add_user(engine)
    bridge = make_bridge(audit=True)

    @bridge.action(model=User, for_instance=True)
    def rename(user: User, name: str, ctx: ActionContext) -> dict[str, Any]:
        if name == 'refused':
            user.name = 'written, then rolled back'
            raise ActionError('That name is refused')
        user.name = name
        return {'renamed': user.id}

    return bridge


@pytest.fixture
def client(audited: Bridge) -> Client:
    return Client(audited)


class TestActionLog:
    def test_a_success_is_logged_with_what_ran(self, audited: Bridge, client: Client, engine: sa.Engine) -> None:
        result = client.execute('rename', 'users', ids='1', name='Grace')
        assert result.status_code == 200, result.text
        assert user_name(engine) == 'Grace'
        [row] = log_rows(engine)
        assert (row['action'], row['collection'], row['outcome'], row['error']) == ('rename', 'users', 'success', None)
        assert json.loads(row['ids']) == ['1']
        assert json.loads(row['params']) == {'ids': '1', 'name': 'Grace'}
        assert json.loads(row['response']) == {'result': True, 'renamed': 1}
        assert result.json == {'result': True, 'renamed': 1, 'run': row['id']}  # the answer names its log row
        assert row['actor'] is None  # a shared-token request has no actor
        assert row['duration_ms'] > 0 and row['created_at'] is not None
        assert row['idempotency_key'] is None

    def test_a_failure_is_logged_after_the_rollback(self, audited: Bridge, client: Client, engine: sa.Engine) -> None:
        result = client.execute('rename', 'users', ids='1', name='refused')
        assert result.status_code == 400
        assert result.json == {'type': 'about:blank', 'title': 'Bad Request', 'status': 400, 'detail': 'That name is refused', 'code': 'action_error'}
        assert user_name(engine) == 'Ada'  # the action's write is gone…
        [row] = log_rows(engine)  # …its log row is not: it was written in a transaction of its own
        assert (row['outcome'], row['error'], row['response']) == ('error', 'That name is refused', None)

    def test_a_rejected_form_is_logged_as_rejected(self, audited: Bridge, client: Client, engine: sa.Engine) -> None:
        result = client.execute('rename', 'users', ids='1')
        assert result.status_code == 400
        assert result.json['fields'] == {'name': 'this field is required'}
        [row] = log_rows(engine)
        assert row['outcome'] == 'rejected' and 'name: this field is required' in row['error']

    def test_an_unexpected_crash_logs_the_generic_message_only(self, audited: Bridge, client: Client,
                                                                engine: sa.Engine) -> None:
        @audited.action()
        def explode() -> None:
            raise RuntimeError('internal detail: host db-7, password hunter2')

        result = client.execute('explode')
        assert result.status_code == 500
        assert result.json['code'] == 'internal_error' and 'hunter2' not in result.text
        [row] = log_rows(engine)
        assert row['outcome'] == 'error' and 'hunter2' not in row['error']

    def test_secret_params_are_redacted_at_any_depth(self, audited: Bridge, client: Client, engine: sa.Engine) -> None:
        @audited.action()
        def sign_up(password: str, note: str, ctx: ActionContext) -> None:
            assert password == 'hunter2'  # the action itself gets the real value

        form = {'password': 'hunter2', 'note': 'hello', 'extra': {'apiKey': 'k-123', 'items': [{'token': 't-456'}]},
                'Authorization': 'Bearer b-789', 'author': 'Ada'}
        assert client.execute('sign_up', **form).status_code == 200
        [row] = log_rows(engine)
        assert json.loads(row['params']) == {
            'password': REDACTED, 'note': 'hello', 'extra': {'apiKey': REDACTED, 'items': [{'token': REDACTED}]},
            'Authorization': REDACTED, 'author': 'Ada',
        }
        stored = json.dumps(row, default=str)
        assert not any(secret in stored for secret in ('hunter2', 'k-123', 't-456', 'b-789'))

    @pytest.mark.parametrize('key, hidden', [
        ('password', True), ('new_password', True), ('client_secret', True), ('api_key', True), ('apiKey', True),
        ('access_token', True), ('private_key', True), ('authorization', True), ('credentials', True),
        ('card_number', True), ('cvv', True), ('iban', True),
        ('name', False), ('author', False), ('authority', False), ('amount', False), ('note', False),
    ])
    def test_which_keys_count_as_secret(self, key: str, hidden: bool) -> None:
        assert (redact({key: 'value'})[key] == REDACTED) is hidden

    def test_the_actor_is_recorded(self, audited: Bridge, engine: sa.Engine) -> None:
        actor = {'user': 42, 'projects': {'shop': {'owner': True}}}
        answer = audited.execute('rename', model='users', params={'ids': [1], 'name': 'Edsger'}, actor=actor)
        [row] = log_rows(engine)
        assert answer == {'result': True, 'renamed': 1, 'run': row['id']}
        assert json.loads(row['actor']) == actor

    def test_a_large_request_fits_in_the_log(self, audited: Bridge, client: Client, engine: sa.Engine) -> None:
        @audited.action()
        def annotate(note: str) -> dict[str, int]:
            return {'length': len(note)}

        note = 'x' * 200_000  # MySQL's TEXT would refuse it, and with it the whole action
        result = client.execute('annotate', note=note)
        assert result.status_code == 200, result.text
        [row] = log_rows(engine)
        assert row['outcome'] == 'success' and json.loads(row['params'])['note'] == note


class TestCrashBeforeCommit:
    """The action and its success row are written; then the commit fails. Neither may remain."""

    def test_a_failing_commit_leaves_no_success_row(self, audited: Bridge, client: Client, engine: sa.Engine) -> None:
        @sa.event.listens_for(audited.sessions, 'before_commit')
        def disk_full(session: Session) -> None:
            # Runs inside Session.commit(): after the action's flush and the log insert.
            raise OSError('disk full')

        result = client.execute('rename', 'users', ids='1', name='Grace')
        assert result.status_code == 500
        assert result.json['code'] == 'internal_error'
        assert user_name(engine) == 'Ada'
        [row] = log_rows(engine)
        assert row['outcome'] == 'error'  # the failure row only; no 'success' without the action's data

        sa.event.remove(audited.sessions, 'before_commit', disk_full)
        assert client.execute('rename', 'users', ids='1', name='Grace').status_code == 200
        assert [row['outcome'] for row in log_rows(engine)] == ['error', 'success']

    def test_a_commit_refused_by_the_database(self, tmp_path: Path) -> None:
        """A deferred constraint is checked at COMMIT, after the log row was inserted (PostgreSQL)."""
        engine = migrated(database_url('postgresql', tmp_path))
        add_user(engine)
        with engine.begin() as connection:
            connection.execute(sa.text('CREATE TABLE pledges (id serial PRIMARY KEY, user_id integer '
                                       'REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED)'))
        bridge = Bridge(models.Base, engine=engine, token=TOKEN, audit=True)

        @bridge.action(model=User, for_instance=True)
        def pledge(user: User, session: Session) -> None:
            user.name = 'pledged'
            session.execute(sa.text('INSERT INTO pledges (user_id) VALUES (999)'))  # no such user: fails at COMMIT

        result = Client(bridge).execute('pledge', 'users', ids='1')
        assert result.status_code == 409
        assert result.json['code'] == 'conflict'
        assert user_name(engine) == 'Ada'
        with engine.connect() as connection:
            assert connection.execute(sa.text('SELECT count(*) FROM pledges')).scalar_one() == 0
        assert [(row['action'], row['outcome']) for row in log_rows(engine)] == [('pledge', 'error')]
        engine.dispose()

    @pytest.mark.parametrize('dialect', ['sqlite', 'postgresql'])
    def test_a_worker_that_dies_before_the_commit(self, dialect: str, tmp_path: Path) -> None:
        """The process is gone mid-transaction: the database keeps neither the action nor any row."""
        url = database_url(dialect, tmp_path)
        engine = migrated(url)
        add_user(engine)
        args = ['serve', 'tests.apps.cli_apps:crashing', '--bind', '127.0.0.1:0', '--workers', '1', '--threads', '1']
        with serving(args, log_path=tmp_path / 'server.log', token=TOKEN,
                     env={'JET_SQLA_DATABASE_URL': url, 'JET_SQLA_TOKEN': TOKEN}) as server:
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                server.message('execute_action', {'name': 'promote', 'params': {'ids': '1'}})
            server.wait_until_healthy()  # gunicorn replaced the worker
            assert 'exited with code 17' in server.log()
        with Session(engine) as session:
            assert session.get_one(User, 1).tier is Tier.BRONZE
        assert log_rows(engine) == []
        engine.dispose()


class TestReadiness:
    def test_refuses_to_serve_without_the_table(self, make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
        bridge = make_bridge(audit=True)
        with pytest.raises(RuntimeError, match='run `jet-sqla db upgrade --database-url URL` first'):
            bridge.wsgi_app()
        with pytest.raises(RuntimeError, match='needs the table jet_sqla_action_log'):
            bridge.mount(falcon.App())
        migrations.upgrade(engine)
        assert isinstance(bridge.wsgi_app(), falcon.App)


class TestIdempotency:
    @pytest.fixture
    def counted(self, audited: Bridge, engine: sa.Engine) -> list[int]:
        """``bump`` adds one to counter 1 per run; the list records each run."""
        with Session(engine) as session, session.begin():
            session.add_all([Counter(id=1, value=0), Counter(id=2, value=0)])
        runs: list[int] = []

        @audited.action(model=Counter, for_instance=True)
        def bump(counter: Counter, by: int = 1) -> dict[str, int]:
            runs.append(counter.id)
            if by < 0:
                raise ActionError('by must not be negative')
            counter.value += by
            return {'value': counter.value}

        return runs

    def bump(self, client: Client, key: str, counter: int = 1, **form: Any) -> testing.Result:
        body = {'name': 'bump', 'params': {'ids': [counter], **form}}
        return client.message('execute_action', body, headers={'Idempotency-Key': key})

    def test_a_repeat_gets_the_stored_response_without_running(self, client: Client, counted: list[int],
                                                               engine: sa.Engine) -> None:
        first = self.bump(client, 'k-1')
        second = self.bump(client, 'k-1')
        assert first.status_code == second.status_code == 200
        [row] = log_rows(engine)
        # The repeat names the same run: the one that ran.
        assert first.content == second.content and first.json == {'result': True, 'value': 1, 'run': row['id']}
        assert counted == [1]
        assert (row['idempotency_key'], row['outcome']) == ('k-1', 'success')
        assert without_run(self.bump(client, 'k-2').json) == {'result': True, 'value': 2}  # another key runs again

    def test_the_key_may_come_in_params(self, client: Client, counted: list[int]) -> None:
        body = {'name': 'bump', 'params': {'ids': [1], 'idempotency_key': 'p-1'}}
        assert without_run(client.message('execute_action', body).json) == {'result': True, 'value': 1}
        assert without_run(client.message('execute_action', body).json) == {'result': True, 'value': 1}
        assert counted == [1]

    def test_a_repeat_may_spell_its_ids_and_key_differently(self, client: Client, counted: list[int]) -> None:
        first = client.message('execute_action', {'name': 'bump', 'params': {'ids': '1', 'by': 2}},
                               headers={'Idempotency-Key': 'k-1'})
        repeat = client.message('execute_action',
                                {'name': 'bump', 'params': {'ids': [1], 'by': 2, 'idempotency_key': 'k-1'}})
        assert first.status_code == repeat.status_code == 200
        assert first.json == repeat.json
        assert without_run(first.json) == {'result': True, 'value': 2}
        assert counted == [1]

    @pytest.mark.parametrize('change', [{'counter': 2}, {'by': 5}])
    def test_the_same_key_for_another_request_is_409(self, client: Client, counted: list[int],
                                                     change: dict[str, Any]) -> None:
        assert self.bump(client, 'k-1').status_code == 200
        result = self.bump(client, 'k-1', **change)
        assert result.status_code == 409
        assert result.json == {'type': 'about:blank', 'title': 'Conflict', 'status': 409, 'code': 'conflict',
                               'detail': 'This idempotency key was used for a different request'}
        assert counted == [1]

    def test_the_same_key_for_another_action_is_409(self, audited: Bridge, client: Client,
                                                    counted: list[int]) -> None:
        assert self.bump(client, 'k-1').status_code == 200
        result = client.message('execute_action', {'name': 'rename', 'params': {'ids': [1], 'name': 'X'}},
                                headers={'Idempotency-Key': 'k-1'})
        assert result.status_code == 409 and result.json['code'] == 'conflict'

    def test_a_failed_run_does_not_use_up_its_key(self, client: Client, counted: list[int],
                                                  engine: sa.Engine) -> None:
        refused = client.message('execute_action', {'name': 'bump', 'params': {'ids': [1], 'by': -1}},
                                 headers={'Idempotency-Key': 'k-1'})
        assert refused.status_code == 400 and refused.json['code'] == 'action_error'
        # The client fixes nothing and retries: the key is free, so it runs (and fails) again.
        again = client.message('execute_action', {'name': 'bump', 'params': {'ids': [1], 'by': -1}},
                               headers={'Idempotency-Key': 'k-1'})
        assert again.status_code == 400
        assert counted == [1, 1]
        assert [row['idempotency_key'] for row in log_rows(engine)] == [None, None]

    @pytest.mark.parametrize('where, key, field', [
        ('params', 12, 'idempotency_key'),
        ('params', '', 'idempotency_key'),
        ('header', 'k' * 256, 'idempotency_key'),
    ])
    def test_a_malformed_key_is_400(self, client: Client, counted: list[int], where: str, key: Any,
                                    field: str) -> None:
        form: dict[str, Any] = {'ids': [1]}
        headers = {}
        if where == 'params':
            form['idempotency_key'] = key
        else:
            headers['Idempotency-Key'] = key
        result = client.message('execute_action', {'name': 'bump', 'params': form}, headers=headers)
        assert result.status_code == 400
        assert result.json['code'] == 'invalid_params'
        assert result.json['fields'] == {field: 'expected a string of 1 to 255 characters'}
        assert counted == []

    def test_keys_need_audit(self, engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> None:
        bridge = make_bridge()

        @bridge.action()
        def ping() -> None:
            raise AssertionError('must not run')

        result = Client(bridge).message('execute_action', {'name': 'ping'}, headers={'Idempotency-Key': 'k'})
        assert result.status_code == 400
        assert error_code(result.json) == 'idempotency_needs_audit'  # documented in the README's error table
        assert error_message(result.json) == 'Idempotency keys need the bridge to be built with audit=True'


def post_concurrently(send: Callable[[], tuple[int, bytes]], count: int = 2) -> list[tuple[int, bytes]]:
    """Start ``count`` calls of ``send`` at the same moment; their (status, body), bounded in time."""
    barrier = threading.Barrier(count, timeout=30)
    results: list[tuple[int, bytes]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            results.append(send())
        except BaseException as error:  # noqa: BLE001 - reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert len(results) == count, 'a request did not finish within 60 s'
    return results


def counter_value(engine: sa.Engine) -> int:
    with Session(engine) as session:
        return session.get_one(Counter, 1).value


@pytest.mark.parametrize('server_dialect', ['postgresql', 'mariadb'])
class TestConcurrentKeys:
    """Two requests with one key, at once: the second waits on the key's row, then replays the first's answer."""

    def setup_database(self, server_dialect: str, tmp_path: Path) -> sa.Engine:
        engine = migrated(database_url(server_dialect, tmp_path))
        with Session(engine) as session, session.begin():
            session.add(Counter(id=1, value=0))
        return engine

    def test_in_one_process(self, server_dialect: str, tmp_path: Path) -> None:
        engine = self.setup_database(server_dialect, tmp_path)
        bridge = Bridge(models.Base, engine=engine, token=TOKEN, audit=True)
        cli_apps.declare_increment(bridge)
        app = bridge.wsgi_app()
        key = str(uuid.uuid4())

        def send() -> tuple[int, bytes]:
            result = testing.TestClient(app).simulate_post(
                '/api/messages/', json={'name': 'execute_action', 'params': {'name': 'increment', 'params': {'ids': [1]}}},
                headers={**AUTH, 'Idempotency-Key': key})
            return result.status_code, result.content

        (status_a, body_a), (status_b, body_b) = post_concurrently(send)
        assert status_a == status_b == 200
        assert body_a == body_b
        assert without_run(json.loads(body_a)) == {'result': True, 'value': 1, 'saw_waiter': True}  # they did overlap
        assert counter_value(engine) == 1
        assert [(row['idempotency_key'], row['outcome']) for row in log_rows(engine)] == [(key, 'success')]
        engine.dispose()

    def test_across_worker_processes(self, server_dialect: str, tmp_path: Path) -> None:
        engine = self.setup_database(server_dialect, tmp_path)
        url = engine.url.render_as_string(hide_password=False)
        key = str(uuid.uuid4())
        # Sync workers take one request at a time: two at once must be served by two processes.
        args = ['serve', 'tests.apps.cli_apps:audited', '--bind', '127.0.0.1:0', '--workers', '2',
                '--worker-class', 'sync']
        with serving(args, log_path=tmp_path / 'server.log', token=TOKEN,
                     env={'JET_SQLA_DATABASE_URL': url, 'JET_SQLA_TOKEN': TOKEN}) as server:

            def send() -> tuple[int, bytes]:
                connection = http.client.HTTPConnection('127.0.0.1', server.port, timeout=60)
                try:
                    body = json.dumps({'name': 'execute_action', 'params': {'name': 'increment', 'params': {'ids': [1]}}})
                    connection.request('POST', '/api/messages/', body,
                                       {**AUTH, 'Idempotency-Key': key, 'Content-Type': 'application/json'})
                    response = connection.getresponse()
                    return response.status, response.read()
                finally:
                    connection.close()

            (status_a, body_a), (status_b, body_b) = post_concurrently(send)
            log = server.log()
        assert status_a == status_b == 200, log
        assert body_a == body_b
        assert without_run(json.loads(body_a)) == {'result': True, 'value': 1, 'saw_waiter': True}
        assert counter_value(engine) == 1
        assert [(row['idempotency_key'], row['outcome']) for row in log_rows(engine)] == [(key, 'success')]
        engine.dispose()
