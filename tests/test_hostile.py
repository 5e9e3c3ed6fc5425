"""Hostile clients and heavy queries: each attack of the attack run, reproduced on real databases.

Long searches, integer ranges, idempotency keys that a collation merged or
another actor replayed, audit rows an attacker could keep out of the log, pool
exhaustion, lock waits, and the small contract gaps. Assertions are on status
and ``code`` (:func:`assert_error`), whatever the error body's shape.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import Session

from jet_sqla import ActionError, Bridge, migrations
from jet_sqla.audit import MAX_TEXT, action_log
from jet_sqla.errors import KeyBelongsToAnother

from .conftest import AUTH, TOKEN, Client, fresh_engine
from .models import Account, Base, Tag, User

SLEEP = {
    'postgresql': 'SELECT pg_sleep(5)',
    'mariadb': 'SELECT SLEEP(5)',
    'sqlite': 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) '
              'SELECT count(*) FROM n',
}


def assert_error(result: testing.Result, status: int, code: str) -> dict[str, Any]:
    """A JSON error of ``status`` whose code is ``code``, wherever the body keeps it."""
    assert result.status_code == status, result.text[:500]
    assert result.headers.get('content-type', '').startswith(('application/json', 'application/problem+json'))
    body: dict[str, Any] = result.json
    found = body.get('error_code') or body.get('code') or (body.get('errors') or [{}])[0].get('code')
    assert found == code, body
    return body


def add_users(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        session.add_all([User(id=i, name=f'user {i}') for i in range(1, count + 1)])


def options(client: Client, **params: Any) -> testing.Result:
    return client.message('get_field_options', {'model': 'accounts', 'field': 'owner_id', **params})


# --- 2. long searches ------------------------------------------------------------------------

def test_a_search_over_200_characters_is_a_400_that_says_so(client: Client, engine: sa.Engine) -> None:
    add_users(engine, 3)
    assert options(client, q='u' * 200).status_code == 200
    for q in ('u' * 201, 'x' * 100_000):
        body = assert_error(options(client, q=q), 400, 'invalid_params')
        assert f'at most 200 characters, got {len(q)}' in str(body)


def test_an_options_read_past_its_timeout_is_a_504_and_the_backend_is_released(
    make_bridge: Callable[..., Bridge], engine: sa.Engine, dialect: str
) -> None:
    bridge = make_bridge(query_timeout=0.5)

    @bridge.field_options(Account, 'owner_id')
    def slow(session: Session) -> list[Any]:
        session.execute(sa.text(SLEEP[dialect]))
        return []

    client = Client(bridge)
    started = time.monotonic()
    result = options(client)
    elapsed = time.monotonic() - started
    assert_error(result, 504, 'timeout')
    print(f'\n[reliability] options read with query_timeout=0.5 s on {dialect}: 504 after {elapsed:.2f} s')
    assert 'Retry-After' not in result.headers
    if dialect == 'postgresql':
        with engine.connect() as connection:
            running = connection.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(5)%' "
                'AND pid <> pg_backend_pid()')).scalar_one()
        assert running == 0
    # The next read on the same pool runs normally, and an action on it is not bounded by the read's timeout.

    @bridge.action()
    def nap(session: Session) -> dict[str, int]:
        session.execute(sa.text({'postgresql': 'SELECT pg_sleep(0.8)', 'mariadb': 'SELECT SLEEP(0.8)',
                                 'sqlite': 'SELECT 1'}[dialect]))
        return {'slept': 1}

    assert client.execute('nap').status_code == 200


@pytest.mark.parametrize('dialect', ['postgresql'])  # the one database this case exists on
def test_a_foreign_key_search_on_a_big_table_is_stopped_at_the_timeout_on_postgresql(
    make_bridge: Callable[..., Bridge], engine: sa.Engine, dialect: str
) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO users (id, name, tier, status) SELECT i, repeat(md5(i::text), 3), "
                                   "'BRONZE', 'in-progress' FROM generate_series(1, 300000) AS i"))
    client = Client(make_bridge(query_timeout=0.01))
    assert_error(options(client, q='no such name'), 504, 'timeout')
    relaxed = Client(make_bridge())
    assert relaxed.message('get_field_options', {'model': 'accounts', 'field': 'owner_id', 'q': 'zz'}).status_code == 200


@pytest.mark.parametrize('dialect', ['sqlite'])  # the one database this case exists on
def test_a_pattern_sqlite_finds_too_complex_is_a_400_never_a_503(
    make_bridge: Callable[..., Bridge], engine: sa.Engine, dialect: str
) -> None:
    add_users(engine, 3)
    client = Client(make_bridge(max_search_length=200_000))
    result = options(client, q='a' * 60_000)
    assert_error(result, 400, 'search_too_complex')
    assert 'Retry-After' not in result.headers


# --- 3. integer ranges -----------------------------------------------------------------------

def test_offsets_past_32_bits_are_400_and_afters_past_the_column_are_empty(client: Client, engine: sa.Engine) -> None:
    add_users(engine, 3)
    body = assert_error(options(client, offset=2**31), 400, 'invalid_params')
    assert 'offset' in str(body)
    assert options(client, offset=2**31 - 1).json == []
    assert options(client, after=2**31).json == []
    assert [option['value'] for option in options(client, after=-(2**31) - 1).json] == [1, 2, 3]
    assert [option['value'] for option in options(client, after=2).json] == [3]


def test_an_id_outside_its_column_type_is_missing(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
    add_users(engine, 1)
    bridge = make_bridge()

    @bridge.action(model=User, for_instance=True, bulk=True)
    def touch(users: list[User]) -> dict[str, int]:
        return {'count': len(users)}

    @bridge.action()
    def adopt(owner: User) -> dict[str, int]:
        return {'owner': owner.id}

    client = Client(bridge)
    for huge in (2**31, 2**63 - 1, -(2**31) - 1):
        body = assert_error(client.execute('touch', 'users', ids=[1, huge]), 404, 'records_not_found')
        assert body['missing_ids'] == [huge]
        body = assert_error(client.execute('adopt', owner=huge), 400, 'invalid_params')
        assert 'owner' in str(body)
    assert client.execute('touch', 'users', ids=[1]).json == {'result': True, 'count': 1}


# --- 4 and 5. idempotency keys ---------------------------------------------------------------

@pytest.fixture
def audited(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> tuple[Bridge, list[str]]:
    migrations.upgrade(engine)
    bridge = make_bridge(audit=True)
    runs: list[str] = []

    @bridge.action()
    def note(text: str) -> dict[str, str]:
        runs.append(text)
        return {'noted': text}

    return bridge, runs


def test_keys_that_differ_only_in_case_or_accent_are_distinct_keys(audited: tuple[Bridge, list[str]]) -> None:
    bridge, runs = audited
    keys = ['Key-x', 'KEY-x', 'key-x', 'kéy-x']
    for number, key in enumerate(keys):
        assert bridge.execute('note', params={'text': f'run {number}'}, idempotency_key=key)['noted'] == f'run {number}'
    assert runs == ['run 0', 'run 1', 'run 2', 'run 3']
    # And each replays its own response.
    assert bridge.execute('note', params={'text': 'run 1'}, idempotency_key='KEY-x')['noted'] == 'run 1'
    assert len(runs) == 4


def test_a_key_belongs_to_the_actor_that_used_it_first(audited: tuple[Bridge, list[str]],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bridge, runs = audited
    first = {'user': 1, 'exp': 2_000_000_000}
    assert bridge.execute('note', params={'text': 'mine'}, actor=first, idempotency_key='k1')['noted'] == 'mine'
    with caplog.at_level(logging.WARNING, logger='jet_sqla'), pytest.raises(KeyBelongsToAnother):
        bridge.execute('note', params={'text': 'mine'}, actor={'user': 2, 'exp': 2_000_000_000},
                       idempotency_key='k1')
    assert any('reused by user:2' in record.getMessage() for record in caplog.records)
    with bridge.engine.connect() as connection:  # and the attempt is in the audit log, as user 2's
        refused = connection.execute(sa.select(action_log.c.actor, action_log.c.outcome, action_log.c.error)
                                     .where(action_log.c.outcome == 'error')).all()
    assert len(refused) == 1 and '"user":2' in refused[0].actor and 'another user' in refused[0].error
    with pytest.raises(KeyBelongsToAnother):
        bridge.execute('note', params={'text': 'mine'}, actor=None, idempotency_key='k1')  # the shared token
    # The owner replays, with a new token (another exp).
    assert bridge.execute('note', params={'text': 'mine'}, actor={'user': 1, 'exp': 2_100_000_000},
                          idempotency_key='k1')['noted'] == 'mine'
    assert runs == ['mine']
    # A shared-token key is the shared token's.
    bridge.execute('note', params={'text': 'shared'}, idempotency_key='k2')
    with pytest.raises(KeyBelongsToAnother):
        bridge.execute('note', params={'text': 'shared'}, actor=first, idempotency_key='k2')
    result = Client(bridge).http.simulate_post('/api/messages/', json={
        'name': 'execute_action', 'params': {'name': 'note', 'params': {'text': 'shared'}}},
        headers={**AUTH, 'Idempotency-Key': 'k2'})
    assert (result.status_code, result.json['noted']) == (200, 'shared')


# --- 6 and 7. audit rows -----------------------------------------------------------------------

def test_every_failed_run_leaves_its_row_however_long_its_error(audited: tuple[Bridge, list[str]],
                                                                engine: sa.Engine) -> None:
    bridge, _ = audited

    @bridge.action()
    def shout(size: int) -> None:
        raise ActionError('é' * size)

    for size in (10, 70_000, 1_000_000):
        with pytest.raises(ActionError):
            bridge.execute('shout', params={'size': size})
    with engine.connect() as connection:
        errors = connection.execute(sa.select(action_log.c.error).where(action_log.c.action == 'shout')
                                    .order_by(action_log.c.id)).scalars().all()
    assert len(errors) == 3
    assert errors[0] == 'é' * 10
    for stored, size in zip(errors[1:], (70_000, 1_000_000)):
        assert len(stored) == MAX_TEXT and stored.endswith(f'[truncated: {size} characters in all]')


def test_a_claim_past_64_bits_is_logged_not_a_500(audited: tuple[Bridge, list[str]], engine: sa.Engine) -> None:
    bridge, _ = audited

    @bridge.action()
    def refuse() -> None:
        raise ActionError('no')

    actor = {'user': 3, 'exp': 2**64, 'big': -(2**70)}
    assert bridge.execute('note', params={'text': 'ok'}, actor=actor, idempotency_key='big-claims')['noted'] == 'ok'
    with pytest.raises(ActionError):
        bridge.execute('refuse', actor=actor)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(action_log.c.action, action_log.c.outcome, action_log.c.actor)
                                  .order_by(action_log.c.id)).all()
    assert [(row.action, row.outcome) for row in rows] == [('note', 'success'), ('refuse', 'error')]
    assert all(str(2**64) in row.actor for row in rows)


# --- 8. the right status for the right failure ----------------------------------------------

def test_pool_exhaustion_is_a_503_saying_busy_with_retry_after(db_url: str) -> None:
    engine = fresh_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    add_users(engine, 1)
    bridge = Bridge(Base, engine=engine, token=TOKEN)

    @bridge.action(model=User, for_instance=True)
    def rename(user: User) -> None:
        user.name = 'renamed'

    client = Client(bridge)
    # The only connection of each pool (on PostgreSQL, reads have a pool of their own).
    with contextlib.ExitStack() as stack:
        for pool_engine in {id(engine): engine, id(bridge.read_engine): bridge.read_engine}.values():
            stack.enter_context(pool_engine.connect()).execute(sa.text('SELECT 1'))
        started = time.monotonic()
        result = client.execute('rename', 'users', ids='1')
        waited = time.monotonic() - started
        assert_error(result, 503, 'server_busy')
        assert result.headers.get('Retry-After') == '1'
        assert_error(options(client), 503, 'server_busy')
    assert waited < 5
    assert client.execute('rename', 'users', ids='1').status_code == 200
    engine.dispose()


@pytest.mark.parametrize('dialect', ['mariadb'])  # the one database this case exists on
def test_a_lock_wait_timeout_on_mariadb_is_a_409_and_writes_nothing(db_url: str, dialect: str) -> None:
    engine = fresh_engine(db_url)

    @sa.event.listens_for(engine, 'connect')
    def short_waits(dbapi_connection: Any, record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute('SET SESSION innodb_lock_wait_timeout = 1')

    engine.dispose()
    add_users(engine, 1)
    bridge = Bridge(Base, engine=engine, token=TOKEN)

    @bridge.action(model=User, for_instance=True, lock=True)
    def rename(user: User) -> None:
        user.name = 'renamed'

    with engine.connect() as holder:
        holder.execute(sa.text('SELECT * FROM users WHERE id = 1 FOR UPDATE'))
        body = assert_error(Client(bridge).execute('rename', 'users', ids='1'), 409, 'lock_not_granted')
        assert 'nothing was written' in str(body)
        holder.rollback()
    with engine.connect() as connection:
        assert connection.execute(sa.text('SELECT name FROM users WHERE id = 1')).scalar_one() == 'user 1'
    engine.dispose()


# --- 9. small contract gaps --------------------------------------------------------------------

def test_an_idempotency_key_over_255_characters_is_refused_on_every_message(client: Client) -> None:
    for name in ('get_action_list', 'get_field_options', 'execute_action', 'no_such_message'):
        result = client.message(name, {}, headers={'Idempotency-Key': 'k' * 256})
        assert_error(result, 400, 'invalid_params')
    assert client.message('get_action_list', {}, headers={'Idempotency-Key': 'k' * 255}).status_code == 200


def test_an_empty_model_is_accepted_where_a_string_is(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
    add_users(engine, 1)
    bridge = make_bridge()

    @bridge.action()
    def hello(who: User | None = None) -> dict[str, str]:
        return {'hello': 'world'}

    client = Client(bridge)
    assert client.execute('hello', '').json == {'result': True, 'hello': 'world'}
    result = client.message('get_field_options', {'action': 'hello', 'model': '', 'field': 'who'})
    assert result.status_code == 200 and [option['value'] for option in result.json] == [1]
    # A handler-style options function answers what the declared ones do not, "" included.
    bridge.messages.add_handler('get_field_options', lambda params: [{'value': 'v', 'name': params['field']}])
    result = client.message('get_field_options', {'model': '', 'field': 'anything'})
    assert result.json == [{'value': 'v', 'name': 'anything'}], result.json
    # Without one, a collection is needed: a 400 that says so, not a 5xx.
    bridge.messages.clear()
    assert_error(client.message('get_field_options', {'model': '', 'field': 'anything'}), 400, 'invalid_params')


def test_head_health_answers_like_get(client: Client) -> None:
    get = client.http.simulate_get('/api/health')
    head = client.http.simulate_head('/api/health')
    assert (head.status_code, head.headers.get('content-type')) == (get.status_code, get.headers.get('content-type'))
    assert head.content == b''


def test_console_files_answer_get_and_head_only(make_bridge: Callable[..., Bridge]) -> None:
    http = testing.TestClient(make_bridge(console=True).wsgi_app())
    assert http.simulate_get('/api/console/').status_code == 200
    assert http.simulate_head('/api/console/console.js').status_code == 200
    for method in ('POST', 'PUT', 'DELETE', 'PATCH'):
        result = http.simulate_request(method, '/api/console/console.js')
        assert_error(result, 405, 'method_not_allowed')
        assert set(result.headers['allow'].replace(' ', '').split(',')) == {'GET', 'HEAD'}


@pytest.mark.parametrize(('read_only', 'restricted'), [
    (True, True), ('true', True), (1, True), ('yes', True), ('True', True), ([1], True),
    (False, False), (0, False), ('false', False), ('0', False), (None, False),
])
def test_any_truthy_read_only_means_read_only(make_bridge: Callable[..., Bridge], engine: sa.Engine,
                                              read_only: Any, restricted: bool) -> None:
    from .test_jwt import PROJECT, Keys, as_jwt

    keys = Keys()
    bridge = make_bridge(jwt_public_key=keys.public_pem, project=PROJECT)

    @bridge.action()
    def ping() -> dict[str, str]:
        return {'pong': 'yes'}

    client = Client(bridge, headers=as_jwt(keys.token(read_only=read_only)))
    assert client.message('get_action_list').status_code == 200
    result = client.execute('ping')
    if restricted:
        assert_error(result, 403, 'forbidden')
    else:
        assert result.json == {'result': True, 'pong': 'yes'}


def test_any_json_number_encodes_with_either_library() -> None:
    import json

    from jet_sqla import encoding

    value = {'exp': 2**64, 'big': [-(2**70), 10**30], 'small': 1}
    assert json.loads(encoding.dumps(value)) == value  # orjson reads such numbers back as floats


def test_string_ids_match_byte_for_byte_whatever_the_collation(make_bridge: Callable[..., Bridge],
                                                               engine: sa.Engine) -> None:
    """MariaDB's default collation finds 'ABC' for 'abc' and 'abc ' (trailing spaces pad); the ids are matched again."""

    with Session(engine) as session, session.begin():
        session.add(Tag(code='ABC', title='upper'))
    bridge = make_bridge()

    @bridge.action(model=Tag, for_instance=True, bulk=True)
    def label(tags: list[Tag]) -> dict[str, list[str]]:
        return {'codes': [tag.code for tag in tags]}

    client = Client(bridge)
    assert client.execute('label', 'tags', ids=['ABC']).json == {'result': True, 'codes': ['ABC']}
    for wrong in ('abc', 'Abc', 'ÀBC'):
        body = assert_error(client.execute('label', 'tags', ids=['ABC', wrong]), 404, 'records_not_found')
        assert body['missing_ids'] == [wrong]
