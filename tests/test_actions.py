"""Declaring and executing actions: instances, transactions, errors, locking, query counts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import ActionContext, ActionError, Bridge, loading
from jet_sqla.errors import NotFound

from .conftest import Client, StatementLog
from .error_body import error_code, error_message
from .models import Account, Counter, Document, Tag, Tier, User


def add_users(engine: sa.Engine, count: int, **fields: Any) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=f'user {i}', **fields) for i in range(1, count + 1))


def names(engine: sa.Engine) -> dict[int, str]:
    with Session(engine) as session:
        return {user.id: user.name for user in session.scalars(sa.select(User))}


class TestKinds:
    def test_bulk_record_action_gets_instances_in_request_order(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 5)
        seen: list[list[int]] = []

        @bridge.action(model=User, for_instance=True, bulk=True)
        def touch(users: list[User]) -> dict[str, int]:
            seen.append([user.id for user in users])
            return {'count': len(users)}

        result = client.execute('touch', 'users', ids='4,2,5,2')
        assert result.status_code == 200, result.text
        assert result.json == {'result': True, 'count': 3}
        assert seen == [[4, 2, 5]]

    def test_ids_as_json_list_and_single_id(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 3)
        seen: list[Any] = []

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            seen.append(sorted(user.id for user in users))

        @bridge.action(model=User, for_instance=True)
        def single(user: User) -> None:
            seen.append(user.id)

        assert client.execute('bulk', ids=[3, '1']).status_code == 200
        assert client.execute('single', id='2').status_code == 200
        assert client.execute('single', ids=[3]).status_code == 200
        assert seen == [[1, 3], 2, 3]

    def test_single_record_action_refuses_several_ids(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 2)

        @bridge.action(model=User, for_instance=True)
        def single(user: User) -> None:
            raise AssertionError('must not run')

        result = client.execute('single', ids=[1, 2])
        assert result.status_code == 400
        assert result.json['fields'] == {'ids': 'this action runs on one record at a time'}

    def test_record_action_needs_ids(self, bridge: Bridge, client: Client) -> None:
        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            raise AssertionError('must not run')

        result = client.execute('bulk')
        assert result.status_code == 400
        assert result.json['code'] == 'invalid_params'
        assert 'ids' in result.json['fields']

    def test_collection_and_common_actions_with_session_and_context(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 2)
        contexts: list[ActionContext] = []

        @bridge.action(model=User)
        def rename_all(session: Session, ctx: ActionContext) -> dict[str, int]:
            contexts.append(ctx)
            assert ctx.session is session
            return {'renamed': session.execute(sa.update(User).values(name='renamed')).rowcount}

        @bridge.action()
        def count_users(session: Session) -> dict[str, int]:
            return {'users': session.scalar(sa.select(sa.func.count()).select_from(User)) or 0}

        assert client.execute('rename_all').json == {'result': True, 'renamed': 2}
        assert client.execute('count_users').json == {'result': True, 'users': 2}
        assert set(names(engine).values()) == {'renamed'}
        (ctx,) = contexts
        assert (ctx.collection, ctx.model, ctx.ids, ctx.actor, ctx.action) == ('users', User, [], None, 'rename_all')
        assert ctx.request is not None and ctx.request.path == '/api/messages/'

    def test_action_list_describes_every_kind(self, bridge: Bridge, client: Client) -> None:
        @bridge.action(model=User, for_instance=True, bulk=True)
        def mail_users(users: list[User]) -> None: ...

        @bridge.action(model='users')
        def refresh_users_status() -> None: ...

        @bridge.action()
        def rebuild_index() -> None: ...

        @bridge.action(model=[User, 'accounts'], name='audit_things', label='Audit', icon='search')
        def audit(ctx: ActionContext) -> None: ...

        result = client.message('get_action_list')
        assert result.status_code == 200
        assert result.json == [
            {'name': 'mail_users', 'model_action': {'model': 'users', 'for_instance': True, 'bulk': True}, 'params': []},
            {'name': 'refresh_users_status', 'model_action': {'model': 'users', 'for_instance': False, 'bulk': False}, 'params': []},
            {'name': 'rebuild_index', 'common_action': {}, 'params': []},
            {'name': 'audit_things', 'label': 'Audit', 'verbose_name': 'Audit', 'icon': 'search',
             'model_action': {'model': ['users', 'accounts'], 'for_instance': False, 'bulk': False}, 'params': []},
        ]

    def test_action_list_bytes_are_computed_once(self, bridge: Bridge, client: Client) -> None:
        @bridge.action()
        def first() -> None: ...

        one = client.message('get_action_list').content
        assert client.message('get_action_list').content is not None
        assert bridge.dispatcher._cached_action_list()[1] is bridge.dispatcher._cached_action_list()[1]

        @bridge.action()
        def second() -> None: ...

        two = client.message('get_action_list').json
        assert [item['name'] for item in two] == ['first', 'second']
        assert one != client.message('get_action_list').content

    def test_multi_collection_action_needs_model(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 1)
        seen: list[str | None] = []

        @bridge.action(model=[User, Counter])
        def which(ctx: ActionContext) -> None:
            seen.append(ctx.collection)

        assert client.execute('which', 'counters').status_code == 200
        missing = client.execute('which')
        assert missing.status_code == 400 and 'model' in missing.json['fields']
        wrong = client.execute('which', 'accounts')
        assert wrong.status_code == 400 and 'accounts' in wrong.json['fields']['model']
        assert seen == ['counters']


class TestIds:
    def test_string_and_uuid_primary_keys(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        with Session(engine) as session, session.begin():
            session.add_all([Tag(code='a', title='A'), Tag(code='b', title='B')])
            document = Document(headline='hello')
            session.add(document)
            session.flush()
            document_id = str(document.id)
        seen: list[Any] = []

        @bridge.action(model=Tag, for_instance=True, bulk=True)
        def tags(items: list[Tag]) -> None:
            seen.append([tag.code for tag in items])

        @bridge.action(model=Document, for_instance=True)
        def doc(item: Document) -> None:
            seen.append(item.headline)

        assert client.execute('tags', ids='b,a').status_code == 200
        assert client.execute('doc', id=document_id).status_code == 200
        bad = client.execute('doc', id='not-a-uuid')
        assert bad.status_code == 400 and 'not-a-uuid' in bad.json['fields']['ids']
        assert seen == [['b', 'a'], 'hello']

    @pytest.mark.parametrize('bad_id', ['abc', '1.5', 1.5, True, 2**70, '', '1; DROP TABLE users'])
    def test_uncoercible_id_is_400_naming_it(self, bridge: Bridge, client: Client, engine: sa.Engine, bad_id: Any) -> None:
        add_users(engine, 1)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            raise AssertionError('must not run')

        result = client.execute('bulk', ids=[1, bad_id])
        assert result.status_code == 400, result.text
        assert result.json['code'] == 'invalid_params'
        assert 'ids' in result.json['fields']
        assert names(engine) == {1: 'user 1'}

    def test_missing_ids_are_404_listing_them_and_nothing_runs(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 3)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            raise AssertionError('must not run')

        result = client.execute('bulk', ids=[1, 7, 2, 9])
        assert result.status_code == 404
        assert result.json['code'] == 'records_not_found'
        assert result.json['missing_ids'] == [7, 9]
        assert '7' in result.json['detail'] and '9' in result.json['detail']

    def test_ten_thousand_ids_take_at_most_twenty_queries(self, bridge: Bridge, client: Client, engine: sa.Engine,
                                                         statements: StatementLog) -> None:
        with engine.begin() as connection:
            connection.execute(sa.insert(User), [{'id': i, 'name': f'u{i}'} for i in range(1, 10_001)])
        counted: list[int] = []

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            counted.append(len(users))

        ids = list(range(10_000, 0, -1))
        with statements:
            result = client.execute('bulk', ids=ids)
        assert result.status_code == 200, result.text
        assert counted == [10_000]
        selects = statements.selects()
        assert len(statements.statements) <= 20, len(statements.statements)
        if engine.dialect.name == 'postgresql':
            assert len(selects) == 1 and '= ANY (' in selects[0].upper()  # one array parameter
        else:
            assert len(selects) == 10_000 // loading.chunk_size(engine.dialect)  # one SELECT per chunk
            assert all(' IN ' in select.upper() for select in selects)

    def test_too_many_ids_is_413(self, make_bridge: Any, engine: sa.Engine) -> None:
        bridge = make_bridge(max_ids=10)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def bulk(users: list[User]) -> None:
            raise AssertionError('must not run')

        client = Client(bridge)
        for ids in (list(range(11)), ','.join(map(str, range(11)))):
            result = client.execute('bulk', ids=ids)
            assert result.status_code == 413
            assert result.json['code'] == 'too_large'


class TestTransactions:
    def test_commit_on_return(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 2)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def rename(users: list[User]) -> None:
            for user in users:
                user.name = f'renamed {user.id}'

        assert client.execute('rename', ids=[1, 2]).status_code == 200
        assert names(engine) == {1: 'renamed 1', 2: 'renamed 2'}

    def test_action_error_is_400_with_message_and_rolls_back(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 2)

        @bridge.action(model=User, for_instance=True, bulk=True)
        def half(users: list[User], session: Session) -> None:
            users[0].name = 'written'
            session.flush()  # the write reaches the database before the failure
            session.add(Counter(id=1, value=5))
            session.flush()
            raise ActionError('Not today')

        result = client.execute('half', ids=[1, 2])
        assert result.status_code == 400
        assert result.json == {'type': 'about:blank', 'title': 'Bad Request', 'status': 400, 'detail': 'Not today',
                               'code': 'action_error'}
        assert names(engine) == {1: 'user 1', 2: 'user 2'}
        with Session(engine) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Counter)) == 0

    def test_unexpected_exception_is_500_without_traceback_and_rolls_back(
        self, bridge: Bridge, client: Client, engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        add_users(engine, 1)

        @bridge.action(model=User, for_instance=True)
        def crash(user: User, session: Session) -> None:
            user.name = 'written'
            session.flush()
            raise KeyError('secret internal detail')

        result = client.execute('crash', id=1)
        assert result.status_code == 500
        assert result.json['code'] == 'internal_error'
        assert 'secret internal detail' not in result.text and 'Traceback' not in result.text
        assert names(engine) == {1: 'user 1'}
        assert any('secret internal detail' in (record.exc_text or '') or record.exc_info for record in caplog.records)

    def test_bad_return_value_rolls_back(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 1)

        @bridge.action(model=User, for_instance=True)
        def odd(user: User) -> Any:
            user.name = 'written'
            return ['not', 'a', 'dict']

        assert client.execute('odd', id=1).status_code == 500
        assert names(engine) == {1: 'user 1'}

    def test_result_that_cannot_be_encoded_rolls_back(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 1)

        @bridge.action(model=User, for_instance=True)
        def odd(user: User) -> dict[str, Any]:
            user.name = 'written'
            return {'thing': object()}

        assert client.execute('odd', id=1).status_code == 500
        assert names(engine) == {1: 'user 1'}

    def test_result_values_are_encoded(self, bridge: Bridge, client: Client) -> None:
        @bridge.action()
        def values() -> dict[str, Any]:
            return {'amount': Decimal('12.30'), 'tier': Tier.GOLD}

        assert client.execute('values').json == {'result': True, 'amount': '12.30', 'tier': 'gold'}

    def test_constraint_violation_is_409_and_rolls_back(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 1)

        @bridge.action()
        def duplicate(session: Session) -> None:
            session.add(Counter(id=1))
            session.flush()
            session.add(User(id=1, name='again'))

        result = client.execute('duplicate')
        assert result.status_code == 409
        assert result.json['code'] == 'conflict'
        with Session(engine) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(Counter)) == 0


class TestLocking:
    def test_lock_selects_for_update_in_pk_order(self, bridge: Bridge, client: Client, engine: sa.Engine,
                                                 statements: StatementLog) -> None:
        add_users(engine, 3)

        @bridge.action(model=User, for_instance=True, bulk=True, lock=True)
        def locked(users: list[User]) -> dict[str, list[int]]:
            return {'order': [user.id for user in users]}

        with statements:
            result = client.execute('locked', ids=[3, 1, 2])
        assert result.json == {'result': True, 'order': [3, 1, 2]}
        (select,) = statements.selects()
        assert 'ORDER BY' in select.upper()
        if engine.dialect.name == 'sqlite':
            assert 'FOR UPDATE' not in select.upper()  # SQLite locks the whole file instead
        else:
            assert 'FOR UPDATE' in select.upper()

    def test_without_lock_no_for_update(self, bridge: Bridge, client: Client, engine: sa.Engine,
                                        statements: StatementLog) -> None:
        add_users(engine, 1)

        @bridge.action(model=User, for_instance=True)
        def plain(user: User) -> None: ...

        with statements:
            client.execute('plain', id=1)
        assert all('FOR UPDATE' not in select.upper() for select in statements.selects())


class TestDeclaration:
    def test_unknown_collection_fails_at_declaration(self, bridge: Bridge) -> None:
        with pytest.raises(NotFound, match="Unknown collection 'nope'") as raised:
            @bridge.action(model='nope')
            def action() -> None: ...
        # The typo is easy to fix when the real names are in the message.
        assert 'the collections are: ' in raised.value.message
        assert all(collection.name in raised.value.message for collection in bridge.catalog)

    def test_record_action_without_model_fails(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match='for_instance=True needs model='):
            @bridge.action(for_instance=True)
            def action(user: User) -> None: ...

    def test_bulk_without_for_instance_fails(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match='bulk=True needs for_instance=True'):
            @bridge.action(model=User, bulk=True)
            def action() -> None: ...

    def test_bulk_annotated_as_single_instance_fails(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match=r'list\[User\]'):
            @bridge.action(model=User, for_instance=True, bulk=True)
            def action(user: User) -> None: ...

    def test_duplicate_name_fails(self, bridge: Bridge) -> None:
        @bridge.action()
        def twice() -> None: ...

        with pytest.raises(ValueError, match='already declared'):
            bridge.action(name='twice')(lambda: None)

    def test_decorator_returns_the_function_and_bare_form_works(self, bridge: Bridge) -> None:
        def plain() -> str:
            return 'called'

        assert bridge.action(plain) is plain
        assert plain() == 'called'
        assert bridge.actions.get('plain') is not None

    def test_unknown_action_is_404(self, client: Client) -> None:
        result = client.execute('nothing_here')
        assert result.status_code == 404
        assert result.json['code'] == 'not_found'
        assert 'nothing_here' in result.json['detail']


def test_programmatic_execute(bridge: Bridge, engine: sa.Engine) -> None:
    add_users(engine, 1)

    @bridge.action(model=User, for_instance=True)
    def rename(user: User, name: str) -> dict[str, str]:
        user.name = name
        return {'name': name}

    assert bridge.execute('rename', params={'id': 1, 'name': 'direct'}) == {'result': True, 'name': 'direct'}
    assert names(engine) == {1: 'direct'}


def test_balances_are_exact_decimals(bridge: Bridge, client: Client, engine: sa.Engine) -> None:
    add_users(engine, 1)
    with Session(engine) as session, session.begin():
        session.add(Account(id=1, owner_id=1, balance=Decimal('0.10')))

    @bridge.action(model=Account, for_instance=True, lock=True)
    def deposit(account: Account, amount: Decimal) -> dict[str, Decimal]:
        account.balance += amount
        return {'balance': account.balance}

    for _ in range(3):
        assert client.execute('deposit', id=1, amount='0.10').status_code == 200
    with Session(engine) as session:
        assert session.get(Account, 1).balance == Decimal('0.40')


def test_value_the_database_refuses_is_400_and_rolls_back(bridge: Bridge, client: Client, engine: sa.Engine) -> None:
    add_users(engine, 1)

    @bridge.action(model=User, for_instance=True)
    def rename(user: User, name: str, session: Session) -> None:
        session.add(Counter(id=1))
        session.flush()
        user.name = name  # users.name is VARCHAR(100)

    result = client.execute('rename', id=1, name='x' * 200)
    if engine.dialect.name == 'sqlite':
        assert result.status_code == 200  # SQLite does not enforce VARCHAR lengths
        return
    assert result.status_code == 400, result.text
    assert error_code(result.json) == 'value_refused'
    if engine.dialect.name in ('mysql', 'mariadb'):
        # MariaDB names the column; the error passes it on, in the reason and as `column`.
        assert "'rename' tried to store a value the database refuses in column name" in error_message(result.json)
        assert result.json.get('column') == 'name'
    else:
        # PostgreSQL does not say which column a too-long value was for: the error claims none.
        assert 'in column' not in error_message(result.json) and 'column' not in result.json
    assert names(engine) == {1: 'user 1'}
    with Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Counter)) == 0


def test_params_list_with_named_form_parameters_is_refused(bridge: Bridge) -> None:
    from jet_sqla import Param

    with pytest.raises(TypeError, match="remove 'extra'"):
        @bridge.action(params=[Param('amount', type=Decimal)])
        def action(extra: str, **form: Any) -> None: ...


def test_an_action_that_needs_no_database_opens_no_connection(bridge: Bridge, client: Client,
                                                              engine: sa.Engine) -> None:
    checkouts: list[object] = []
    sa.event.listen(engine, 'checkout', lambda *args: checkouts.append(args[0]))

    @bridge.action()
    def pure(n: int) -> dict[str, int]:
        return {'double': 2 * n}

    @bridge.action()
    def with_session(session: Session) -> None:
        session.execute(sa.select(1))

    assert client.execute('pure', n=4).json == {'result': True, 'double': 8}
    assert checkouts == []
    assert client.execute('with_session').status_code == 200
    assert len(checkouts) == 1
