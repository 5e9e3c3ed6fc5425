"""Dry runs, change history and undo, on SQLite, PostgreSQL and MariaDB.

A dry run runs the action for real and rolls it back, answering what it
changed; an audited run stores the same list in its log row, in its own
transaction; an undo checks every row still holds what the run wrote and
writes the old values back, or writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import ActionContext, ActionError, Bridge, migrations
from jet_sqla.audit import REDACTED, action_log

from .conftest import TOKEN, Client
from .models import Account, Counter, User
from .test_jwt import PROJECT, Keys, as_jwt

Balances = dict[int, Decimal]


def seed(engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all([User(id=1, name='Ada'), User(id=2, name='Grace')])
        session.flush()
        session.add_all([Account(id=7, owner_id=1, balance=Decimal('100.00')),
                         Account(id=8, owner_id=2, balance=Decimal('5.00')),
                         Account(id=9, owner_id=2, balance=Decimal('1.50'))])


def balances(engine: sa.Engine) -> Balances:
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(Account.id, Account.balance).order_by(Account.id)).all())  # type: ignore[arg-type]


def accounts(engine: sa.Engine) -> list[tuple[int, int, Decimal]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(  # type: ignore[misc]
            sa.select(Account.id, Account.owner_id, Account.balance).order_by(Account.id))]


def log_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(action_log).order_by(action_log.c.id))]


class Shop:
    """A bridge with the actions these tests run, and what their functions saw."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.seen_dry_run: list[bool] = []
        self.called: list[str] = []
        self.client = Client(bridge)

        @bridge.action(lock=True)
        def transfer(account_from: Account, amount: Decimal, account_to: Account, ctx: ActionContext) -> dict[str, Any]:
            self.seen_dry_run.append(ctx.dry_run)
            if amount > account_from.balance:
                raise ActionError('Not enough money')
            account_from.balance -= amount
            account_to.balance += amount
            return {'moved': amount}

        @bridge.action(model=Account, for_instance=True, bulk=True)
        def reshuffle(accounts: list[Account], session: Session) -> None:
            """Update one, delete one, insert one: every kind of row change."""
            first, second = accounts
            first.balance = Decimal('42.00')
            session.delete(second)
            session.add(Account(id=20, owner_id=1, balance=Decimal('3.25')))

        @bridge.action(model=Account)
        def zero_all(session: Session) -> None:
            session.execute(sa.update(Account).values(balance=0))
            session.execute(sa.delete(Counter))
            session.execute(sa.insert(Counter), [{'id': 100, 'value': 1}, {'id': 101, 'value': 2}])

        @bridge.action(model=Counter)
        def make_counters(n: int, session: Session) -> None:
            session.add_all([Counter(id=index, value=index) for index in range(1, n + 1)])

        @bridge.action(model=Account, for_instance=True, bulk=True)
        def adjust(accounts: list[Account], session: Session) -> None:
            """Writes SQLAlchemy cannot know the old or new value of without asking the database."""
            first, second = accounts
            first.balance = Account.balance - 10  # a SQL expression: the new value is the database's
            session.expire(second, ['balance'])
            second.balance = Decimal('77.00')  # assigned while expired: the old value was never loaded

        @bridge.action(model=Account, for_instance=True, preview=False)
        def mail_statement(account: Account) -> None:
            self.called.append('mail_statement')

    def execute(self, action: str, model: str | None = None, **form: Any) -> Any:
        return self.client.execute(action, model, **form)

    def dry(self, action: str, model: str | None = None, **form: Any) -> Any:
        params: dict[str, Any] = {'name': action, 'dry_run': True, 'params': form}
        if model is not None:
            params['model'] = model
        return self.client.message('execute_action', params)

    def message(self, name: str, **params: Any) -> Any:
        return self.client.message(name, params)


@pytest.fixture
def shop(engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> Shop:
    migrations.upgrade(engine)
    seed(engine)
    return Shop(make_bridge(audit=True))


@pytest.fixture
def plain_shop(engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> Shop:
    """No audit log at all: dry runs still work."""
    seed(engine)
    return Shop(make_bridge(max_changes=3))


TRANSFER = {'account_from': 7, 'amount': '10.00', 'account_to': 8}


# -- dry runs ----------------------------------------------------------------------------------------


class TestDryRun:
    def test_a_transfer_shows_both_balances_and_leaves_the_database_untouched(
            self, plain_shop: Shop, engine: sa.Engine) -> None:
        before = balances(engine)
        result = plain_shop.dry('transfer', **TRANSFER)
        assert result.status_code == 200, result.text
        assert result.json == {
            'result': True, 'moved': '10.00', 'dry_run': True,
            'changes': [
                {'collection': 'accounts', 'id': 7, 'op': 'update', 'fields': {'balance': ['100.00', '90.00']}},
                {'collection': 'accounts', 'id': 8, 'op': 'update', 'fields': {'balance': ['5.00', '15.00']}},
            ],
            'counts': {'accounts': {'insert': 0, 'update': 2, 'delete': 0}},
        }
        assert balances(engine) == before
        assert plain_shop.seen_dry_run == [True]

    def test_the_function_sees_a_real_run_as_not_dry(self, plain_shop: Shop, engine: sa.Engine) -> None:
        result = plain_shop.execute('transfer', **TRANSFER)
        assert result.status_code == 200, result.text
        assert result.json == {'result': True, 'moved': '10.00'}  # no changes, no run id: nothing asked for them
        assert plain_shop.seen_dry_run == [False]
        assert balances(engine)[7] == Decimal('90.00')

    def test_dry_run_inside_the_form_is_accepted(self, plain_shop: Shop, engine: sa.Engine) -> None:
        result = plain_shop.execute('transfer', **TRANSFER, dry_run=True)
        assert result.status_code == 200, result.text
        assert result.json['dry_run'] is True and len(result.json['changes']) == 2
        assert balances(engine)[7] == Decimal('100.00')

    @pytest.mark.parametrize('value', ['perhaps', 2, [], {}, 0.5])
    def test_a_bad_dry_run_value_is_a_400_naming_it(self, plain_shop: Shop, engine: sa.Engine, value: Any) -> None:
        result = plain_shop.client.message('execute_action', {'name': 'transfer', 'dry_run': value,
                                                              'params': TRANSFER})
        assert result.status_code == 400
        assert result.json['fields'] == {'dry_run': 'expected true or false'}
        assert plain_shop.seen_dry_run == []

    def test_inserts_deletes_and_bulk_statements_are_reported(self, plain_shop: Shop, engine: sa.Engine) -> None:
        with Session(engine) as session, session.begin():
            session.add(Counter(id=1, value=5))
        result = plain_shop.dry('reshuffle', 'accounts', ids=[7, 9])
        assert result.status_code == 200, result.text
        assert result.json['changes'] == [
            {'collection': 'accounts', 'id': 7, 'op': 'update', 'fields': {'balance': ['100.00', '42.00']}},
            {'collection': 'accounts', 'id': 20, 'op': 'insert',
             'fields': {'id': 20, 'owner_id': 1, 'balance': '3.25'}},
            {'collection': 'accounts', 'id': 9, 'op': 'delete',
             'fields': {'id': 9, 'owner_id': 2, 'balance': '1.50'}},
        ]
        assert result.json['counts'] == {'accounts': {'insert': 1, 'update': 1, 'delete': 1}}
        bulk = plain_shop.dry('zero_all', 'accounts')
        assert bulk.status_code == 200, bulk.text
        assert bulk.json['changes'] == [
            {'collection': 'accounts', 'op': 'bulk_update', 'rows': 3},
            {'collection': 'counters', 'op': 'bulk_delete', 'rows': 1},
            {'collection': 'counters', 'op': 'bulk_insert', 'rows': 2},
        ]
        assert accounts(engine) == [(7, 1, Decimal('100.00')), (8, 2, Decimal('5.00')), (9, 2, Decimal('1.50'))]
        with engine.connect() as connection:
            assert connection.execute(sa.select(Counter.id)).scalars().all() == [1]

    def test_values_only_the_database_knows_are_read_from_it(self, plain_shop: Shop, engine: sa.Engine) -> None:
        result = plain_shop.dry('adjust', 'accounts', ids=[7, 8])
        assert result.status_code == 200, result.text
        assert result.json['changes'] == [
            {'collection': 'accounts', 'id': 7, 'op': 'update', 'fields': {'balance': ['100.00', '90.00']}},
            {'collection': 'accounts', 'id': 8, 'op': 'update', 'fields': {'balance': ['5.00', '77.00']}},
        ]
        assert balances(engine)[7] == Decimal('100.00')

    def test_past_max_changes_the_list_is_truncated_and_the_counts_are_whole(
            self, plain_shop: Shop, engine: sa.Engine) -> None:
        result = plain_shop.dry('make_counters', 'counters', n=8)
        assert result.status_code == 200, result.text
        assert result.json['truncated'] is True
        assert [change['id'] for change in result.json['changes']] == [1, 2, 3]  # max_changes=3
        assert result.json['counts'] == {'counters': {'insert': 8, 'update': 0, 'delete': 0}}
        small = plain_shop.dry('make_counters', 'counters', n=3)
        assert 'truncated' not in small.json and len(small.json['changes']) == 3

    def test_preview_false_refuses_dry_runs_and_does_not_call_the_function(self, plain_shop: Shop) -> None:
        result = plain_shop.dry('mail_statement', 'accounts', ids='7')
        assert result.status_code == 400
        assert result.json['code'] == 'preview_refused'
        assert plain_shop.called == []
        assert plain_shop.execute('mail_statement', 'accounts', ids='7').status_code == 200
        assert plain_shop.called == ['mail_statement']
        listed = {item['name']: item for item in plain_shop.message('get_action_list').json}
        assert listed['mail_statement']['preview'] is False and 'preview' not in listed['transfer']

    def test_a_failed_dry_run_is_the_same_error_as_a_failed_run(self, plain_shop: Shop, engine: sa.Engine) -> None:
        result = plain_shop.dry('transfer', account_from=8, amount='50', account_to=7)
        assert result.status_code == 400 and result.json['detail'] == 'Not enough money'

    def test_an_audited_dry_run_is_logged_apart_and_leaves_no_success(self, shop: Shop, engine: sa.Engine) -> None:
        result = shop.dry('transfer', **TRANSFER)
        assert result.status_code == 200 and 'run' not in result.json
        [row] = log_rows(engine)
        assert row['outcome'] == 'dry_run' and row['undo_of'] is None
        assert json.loads(row['changes'])['counts'] == {'accounts': {'insert': 0, 'update': 2, 'delete': 0}}
        assert balances(engine)[7] == Decimal('100.00')


def test_no_capture_runs_without_a_dry_run_or_history(engine: sa.Engine, make_bridge: Callable[..., Bridge],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from jet_sqla.changes import ChangeCapture

    attached: list[str] = []
    real_attached = ChangeCapture.attached

    def counted(self: ChangeCapture, session: Session) -> Any:
        attached.append('x')
        return real_attached(self, session)

    monkeypatch.setattr(ChangeCapture, 'attached', counted)
    migrations.upgrade(engine)
    seed(engine)
    plain = Shop(make_bridge())
    assert plain.execute('transfer', **TRANSFER).status_code == 200
    audited_only = Shop(make_bridge(audit=True, history=False))
    assert audited_only.execute('transfer', **TRANSFER).status_code == 200
    assert attached == []  # no listener on either session
    assert plain.dry('transfer', **TRANSFER).status_code == 200
    assert attached == ['x']


# -- history -----------------------------------------------------------------------------------------


class TestHistory:
    def test_a_run_stores_its_changes_and_answers_its_log_id(self, shop: Shop, engine: sa.Engine) -> None:
        result = shop.execute('transfer', **TRANSFER)
        assert result.status_code == 200, result.text
        run = result.json['run']
        assert result.json == {'result': True, 'moved': '10.00', 'run': run}
        [row] = log_rows(engine)
        assert row['id'] == run and row['outcome'] == 'success'
        got = shop.message('get_run', run=run)
        assert got.status_code == 200, got.text
        assert got.json['changes'] == [
            {'collection': 'accounts', 'id': 7, 'op': 'update', 'fields': {'balance': ['100.00', '90.00']}},
            {'collection': 'accounts', 'id': 8, 'op': 'update', 'fields': {'balance': ['5.00', '15.00']}},
        ]
        assert {key: got.json[key] for key in ('run', 'action', 'collection', 'ids', 'actor', 'outcome', 'undo_of',
                                                'undone_by', 'truncated')} == {
            'run': run, 'action': 'transfer', 'collection': None, 'ids': [], 'actor': None, 'outcome': 'success',
            'undo_of': None, 'undone_by': None, 'truncated': False}
        assert got.json['counts'] == {'accounts': {'insert': 0, 'update': 2, 'delete': 0}}
        assert got.json['time'] and got.json['params'] == {'account_from': 7, 'amount': '10.00', 'account_to': 8}

    def test_a_failed_run_stores_no_changes(self, shop: Shop, engine: sa.Engine) -> None:
        result = shop.execute('transfer', account_from=8, amount='50', account_to=7)
        assert result.status_code == 400
        [row] = log_rows(engine)
        assert row['outcome'] == 'error' and row['changes'] is None
        assert shop.message('get_run', run=row['id']).json['changes'] is None

    def test_list_runs_filters_and_pages_newest_first(self, shop: Shop, engine: sa.Engine) -> None:
        first = shop.execute('transfer', **TRANSFER).json['run']
        second = shop.execute('transfer', account_from=8, amount='1', account_to=9).json['run']
        third = shop.execute('reshuffle', 'accounts', ids='7,9').json['run']
        fourth = shop.execute('make_counters', 'counters', n=2).json['run']

        def runs(**params: Any) -> list[int]:
            answer = shop.message('list_runs', **params)
            assert answer.status_code == 200, answer.text
            return [run['run'] for run in answer.json['runs']]

        assert runs() == [fourth, third, second, first]
        assert runs(action='transfer') == [second, first]
        assert runs(collection='accounts') == [third]  # the collection the action ran on
        assert runs(collection='accounts', id=9) == [third, second]  # every run that touched account 9
        assert runs(collection='accounts', id='7') == [third, first]
        assert runs(collection='counters', id=2) == [fourth]
        assert runs(limit=2) == [fourth, third]
        page = shop.message('list_runs', limit=2).json
        assert page['has_more'] is True and page['next'] == third
        assert runs(limit=2, after=third) == [second, first]
        summary = shop.message('list_runs', limit=1).json['runs'][0]
        assert summary['action'] == 'make_counters' and summary['outcome'] == 'success' and 'changes' not in summary

    @pytest.mark.parametrize('params, field', [
        ({'limit': 0}, 'limit'), ({'limit': 'lots'}, 'limit'), ({'after': -1}, 'after'),
        ({'id': 7}, 'collection'), ({'collection': 'accounts', 'id': 'seven'}, 'id'), ({'action': 5}, 'action'),
    ])
    def test_bad_list_params_are_400s_naming_the_field(self, shop: Shop, params: dict[str, Any], field: str) -> None:
        result = shop.client.message('list_runs', params)
        assert result.status_code == 400, result.text
        assert field in result.json['fields']

    def test_get_run_of_nothing_is_a_404_and_a_bad_id_a_400(self, shop: Shop) -> None:
        assert shop.message('get_run', run=999).status_code == 404
        bad = shop.message('get_run', run='x')
        assert bad.status_code == 400 and 'run' in bad.json['fields']
        assert shop.message('get_run').json['fields'] == {'run': 'this field is required'}

    def test_without_audit_the_history_messages_say_how_to_turn_it_on(self, plain_shop: Shop) -> None:
        for name in ('get_run', 'list_runs', 'undo_run'):
            result = plain_shop.message(name, run=1)
            assert result.status_code == 400
            assert result.json['code'] == 'history_off'

    def test_history_off_keeps_the_log_but_not_the_changes(self, engine: sa.Engine,
                                                          make_bridge: Callable[..., Bridge]) -> None:
        migrations.upgrade(engine)
        seed(engine)
        shop = Shop(make_bridge(audit=True, history=False))
        result = shop.execute('transfer', **TRANSFER)
        assert result.status_code == 200 and 'run' in result.json
        [row] = log_rows(engine)
        assert row['outcome'] == 'success' and row['changes'] is None


class SecretBase(DeclarativeBase):
    pass


class ApiClient(SecretBase):
    __tablename__ = 'api_clients'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    api_token: Mapped[str] = mapped_column(sa.String(50))


def test_secret_looking_columns_are_redacted_in_history_and_dry_runs(engine: sa.Engine) -> None:
    migrations.upgrade(engine)
    SecretBase.metadata.create_all(engine)
    try:
        bridge = Bridge(SecretBase, engine=engine, token=TOKEN, audit=True)

        @bridge.action(model=ApiClient)
        def register(name: str, session: Session) -> None:
            session.add(ApiClient(id=1, name=name, api_token='tok-123456'))

        client = Client(bridge)
        dry = client.message('execute_action', {'name': 'register', 'dry_run': True, 'params': {'name': 'shop'}})
        assert dry.json['changes'][0]['fields'] == {'id': 1, 'name': 'shop', 'api_token': REDACTED}
        run = client.execute('register', name='shop').json['run']
        stored = json.dumps(log_rows(engine), default=str)
        assert 'tok-123456' not in stored
        assert client.message('get_run', {'run': run}).json['changes'][0]['fields']['api_token'] == REDACTED
    finally:
        SecretBase.metadata.drop_all(engine)


# -- undo --------------------------------------------------------------------------------------------


class TestUndo:
    def test_undo_restores_the_exact_values_with_inserted_and_deleted_rows(
            self, shop: Shop, engine: sa.Engine) -> None:
        before = accounts(engine)
        run = shop.execute('reshuffle', 'accounts', ids='7,9').json['run']
        shop.execute('transfer', account_from=8, amount='0.75', account_to=7)  # touches other rows' values too
        shop.execute('transfer', account_from=7, amount='0.75', account_to=8)
        assert accounts(engine) == [(7, 1, Decimal('42.00')), (8, 2, Decimal('5.00')), (20, 1, Decimal('3.25'))]
        undo = shop.message('undo_run', run=run)
        assert undo.status_code == 200, undo.text
        assert undo.json['undone'] == run and undo.json['run'] > run
        assert accounts(engine) == before
        undo_row = log_rows(engine)[-1]
        assert (undo_row['action'], undo_row['outcome'], undo_row['undo_of']) == ('undo_run', 'success', run)
        assert shop.message('get_run', run=run).json['undone_by'] == undo.json['run']

    def test_undo_of_values_only_the_database_knew(self, shop: Shop, engine: sa.Engine) -> None:
        before = balances(engine)
        run = shop.execute('adjust', 'accounts', ids=[7, 8]).json['run']
        assert balances(engine)[7] == Decimal('90.00') and balances(engine)[8] == Decimal('77.00')
        assert shop.message('undo_run', run=run).status_code == 200
        assert balances(engine) == before

    def test_an_undo_after_a_concurrent_change_is_a_409_and_writes_nothing(
            self, shop: Shop, engine: sa.Engine) -> None:
        run = shop.execute('reshuffle', 'accounts', ids='7,9').json['run']
        with Session(engine) as session, session.begin():
            session.get_one(Account, 7).balance = Decimal('41.00')  # someone else, since
            session.add(Account(id=9, owner_id=1, balance=Decimal(0)))  # the deleted id, taken again
        after = accounts(engine)
        logged = len(log_rows(engine))
        result = shop.message('undo_run', run=run)
        assert result.status_code == 409, result.text
        assert result.json['code'] == 'undo_conflict'
        assert sorted(result.json['conflicts'], key=lambda c: c['id']) == [
            {'collection': 'accounts', 'id': 7, 'column': 'balance', 'expected': '42.00', 'actual': '41.00'},
            {'collection': 'accounts', 'id': 9, 'column': None,
             'reason': 'the run deleted this row, and it exists again'},
        ]
        assert accounts(engine) == after  # nothing written: not even account 20's delete
        rows = log_rows(engine)
        assert len(rows) == logged + 1 and rows[-1]['outcome'] == 'error' and rows[-1]['undo_of'] is None
        assert shop.message('get_run', run=run).json['undone_by'] is None

    def test_a_deleted_row_counts_as_a_conflict(self, shop: Shop, engine: sa.Engine) -> None:
        run = shop.execute('reshuffle', 'accounts', ids='7,9').json['run']
        with Session(engine) as session, session.begin():
            session.delete(session.get_one(Account, 20))
        result = shop.message('undo_run', run=run)
        assert result.status_code == 409
        assert result.json['conflicts'] == [
            {'collection': 'accounts', 'id': 20, 'column': None, 'reason': 'this row was deleted since'}]

    def test_a_double_undo_is_refused_and_undoing_the_undo_reapplies(self, shop: Shop, engine: sa.Engine) -> None:
        run = shop.execute('transfer', **TRANSFER).json['run']
        applied = balances(engine)
        undo = shop.message('undo_run', run=run).json['run']
        original = balances(engine)
        assert original[7] == Decimal('100.00') and original[8] == Decimal('5.00')
        again = shop.message('undo_run', run=run)
        assert again.status_code == 400 and again.json['code'] == 'already_undone'
        redo = shop.message('undo_run', run=undo)
        assert redo.status_code == 200, redo.text
        assert balances(engine) == applied
        assert shop.message('undo_run', run=undo).json['code'] == 'already_undone'
        refused = shop.message('undo_run', run=redo.json['run'])
        assert refused.status_code == 400 and refused.json['code'] == 'undo_of_undo'
        assert balances(engine) == applied

    @pytest.mark.parametrize('action, form, code', [
        ('make_counters', {'n': 8}, 'truncated_run'),
        ('zero_all', {}, 'bulk_run'),
    ])
    def test_runs_that_cannot_be_reverted_exactly_are_refused(self, engine: sa.Engine, make_bridge: Callable[..., Bridge],
                                                              action: str, form: dict[str, Any], code: str) -> None:
        migrations.upgrade(engine)
        seed(engine)
        shop = Shop(make_bridge(audit=True, max_changes=3))
        model = 'counters' if action == 'make_counters' else 'accounts'
        run = shop.execute(action, model, **form).json['run']
        after = accounts(engine)
        result = shop.message('undo_run', run=run)
        assert result.status_code == 400, result.text
        assert result.json['code'] == code
        assert accounts(engine) == after

    def test_failed_dry_and_missing_runs_are_refused(self, shop: Shop, engine: sa.Engine) -> None:
        shop.execute('transfer', account_from=8, amount='50', account_to=7)
        shop.dry('transfer', **TRANSFER)
        failed, dry = (row['id'] for row in log_rows(engine))
        assert shop.message('undo_run', run=failed).json['code'] == 'not_undoable'
        assert shop.message('undo_run', run=dry).json['code'] == 'not_undoable'
        assert shop.message('undo_run', run=12345).status_code == 404
        assert shop.message('undo_run', run=[1]).status_code == 400


@pytest.fixture(scope='module')
def keys() -> Keys:
    return Keys()


class TestPermissions:
    @pytest.fixture
    def guarded(self, engine: sa.Engine, make_bridge: Callable[..., Bridge], keys: Keys) -> Bridge:
        migrations.upgrade(engine)
        seed(engine)
        bridge = make_bridge(audit=True, jwt_public_key=keys.public_pem, project=PROJECT)

        @bridge.action(model=Account, for_instance=True, allow=lambda actor: actor is not None and actor['user'] == 7)
        def empty(account: Account) -> None:
            account.balance = Decimal(0)

        return bridge

    def test_only_who_may_run_the_action_may_undo_or_read_its_runs(
            self, guarded: Bridge, keys: Keys, engine: sa.Engine) -> None:
        boss = Client(guarded, headers=as_jwt(keys.token()))
        other = Client(guarded, headers=as_jwt(keys.token({'user': 8})))
        reader = Client(guarded, headers=as_jwt(keys.token(read_only=True)))
        run = boss.execute('empty', 'accounts', ids='7').json['run']
        assert balances(engine)[7] == Decimal('0.00')
        refused = other.message('undo_run', {'run': run})
        assert refused.status_code == 403, refused.text
        assert other.message('get_run', {'run': run}).status_code == 403
        assert other.message('list_runs', {}).json['runs'] == []
        assert reader.message('undo_run', {'run': run}).status_code == 403
        assert balances(engine)[7] == Decimal('0.00')
        assert [r['run'] for r in boss.message('list_runs', {}).json['runs']] == [run]
        undone = boss.message('undo_run', {'run': run})
        assert undone.status_code == 200, undone.text
        assert balances(engine)[7] == Decimal('100.00')
        # The undo of an undo needs the original action's permission too.
        assert other.message('undo_run', {'run': undone.json['run']}).status_code == 403


@pytest.mark.parametrize('problem', [False, True], ids=['jet', 'problem'])
@pytest.mark.parametrize('dialect', ['sqlite'])  # the document does not depend on the database
def test_the_openapi_document_describes_history_and_real_answers_match(shop: Shop, problem: bool) -> None:
    from openapi_spec_validator import validate

    from .test_openapi import _validator, fetch_document

    document = fetch_document(shop.bridge.wsgi_app())
    validate(document)
    operation = document['paths']['/api/messages/']['post']
    assert {'get_run', 'list_runs', 'undo_run'} <= set(document['components']['schemas']['Message']['discriminator']['mapping'])
    request_schema = _validator(document, operation['requestBody']['content']['application/json']['schema'])
    run = shop.execute('transfer', **TRANSFER).json['run']
    cases = [
        ({'name': 'execute_action', 'params': {'name': 'transfer', 'dry_run': True, 'params': TRANSFER}}, 200),
        ({'name': 'get_run', 'params': {'run': run}}, 200),
        ({'name': 'list_runs', 'params': {'collection': 'accounts', 'id': 7, 'limit': 5}}, 200),
        ({'name': 'undo_run', 'params': {'run': run}}, 200),
        ({'name': 'undo_run', 'params': {'run': run}}, 400),
        ({'name': 'get_run', 'params': {'run': 999}}, 404),
    ]
    headers = dict(shop.client.headers) if problem else {'Authorization': shop.client.headers['Authorization']}
    for message, status in cases:
        request_schema.validate(message)
        result = shop.client.http.simulate_post('/api/messages/', json=message, headers=headers)
        assert result.status_code == status, (message, result.text)
        content_type = result.headers['content-type'].split(';')[0]
        assert content_type == ('application/problem+json' if problem and status >= 400 else 'application/json')
        _validator(document, operation['responses'][str(status)]['content'][content_type]['schema']).validate(
            result.json)


@pytest.mark.parametrize('dialect', ['postgresql', 'mariadb'])  # row locks; SQLite locks the whole file
def test_an_undo_racing_a_writer_waits_for_its_row_lock_and_sees_its_change(shop: Shop, engine: sa.Engine) -> None:
    import threading
    import time

    run = shop.execute('transfer', **TRANSFER).json['run']
    writer = Session(engine)
    writer.begin()
    writer.get_one(Account, 8).balance = Decimal('16.00')
    writer.flush()  # holds account 8's row lock, not committed yet
    answers: list[Any] = []
    undo = threading.Thread(target=lambda: answers.append(shop.message('undo_run', run=run)))
    undo.start()
    time.sleep(0.5)
    assert undo.is_alive(), 'the undo did not wait for the row lock'
    writer.commit()
    writer.close()
    undo.join(15)
    [result] = answers
    assert result.status_code == 409, result.text
    assert result.json['conflicts'] == [
        {'collection': 'accounts', 'id': 8, 'column': 'balance', 'expected': '15.00', 'actual': '16.00'}]
    assert balances(engine)[7] == Decimal('90.00') and balances(engine)[8] == Decimal('16.00')


@pytest.mark.parametrize('dialect', ['postgresql', 'mariadb'])  # row locks; SQLite locks the whole file
def test_two_undos_racing_undo_once(shop: Shop, engine: sa.Engine) -> None:
    import threading

    run = shop.execute('transfer', **TRANSFER).json['run']
    barrier = threading.Barrier(2)
    answers: list[Any] = []

    def undo() -> None:
        client = Client(shop.bridge)  # a client of its own per thread
        barrier.wait()
        answers.append(client.message('undo_run', {'run': run}))

    threads = [threading.Thread(target=undo) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert sorted(answer.status_code for answer in answers) == [200, 400], [a.text for a in answers]
    refused = next(answer for answer in answers if answer.status_code == 400)
    assert refused.json['code'] == 'already_undone'
    assert balances(engine)[7] == Decimal('100.00') and balances(engine)[8] == Decimal('5.00')
    successes = [row for row in log_rows(engine) if row['action'] == 'undo_run' and row['outcome'] == 'success']
    assert [row['undo_of'] for row in successes] == [run]


def test_undo_restores_enums_and_string_and_uuid_keys(engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> None:
    import uuid

    from .models import Document, Status, Tag, Tier

    migrations.upgrade(engine)
    seed(engine)
    with Session(engine) as session, session.begin():
        session.add_all([Tag(code='news', title='News'), Tag(code='old', title='Old')])
    document_id = uuid.UUID('00000000-0000-4000-8000-0000000000aa')
    bridge = make_bridge(audit=True)

    @bridge.action(model=User, for_instance=True)
    def reorganize(user: User, session: Session) -> None:
        user.tier = Tier.GOLD
        user.status = Status.DONE
        user.mood = 'grumpy'
        session.delete(session.get_one(Tag, 'old'))
        session.add(Document(id=document_id, headline='Moved', tag_code='news'))

    def snapshot() -> list[Any]:
        with Session(engine) as session:
            user = session.get_one(User, 1)
            return [(user.tier, user.status, user.mood), session.scalars(sa.select(Tag.code).order_by(Tag.code)).all(),
                    session.scalars(sa.select(Document.id)).all()]

    client = Client(bridge)
    before = snapshot()
    result = client.execute('reorganize', 'users', ids='1')
    assert result.status_code == 200, result.text
    changes = client.message('get_run', {'run': result.json['run']}).json['changes']
    assert changes[0] == {'collection': 'users', 'id': 1, 'op': 'update',
                          'fields': {'tier': ['bronze', 'gold'], 'status': ['in-progress', 'done'],
                                     'mood': [None, 'grumpy']}}
    assert {(change['collection'], change['op'], str(change['id'])) for change in changes[1:]} == {
        ('documents', 'insert', str(document_id)), ('tags', 'delete', 'old')}
    assert snapshot() != before
    undone = client.message('undo_run', {'run': result.json['run']})
    assert undone.status_code == 200, undone.text
    assert snapshot() == before


def test_in_jets_dialect_refusals_and_conflicts_read_as_jet_admin_shows_them(shop: Shop, engine: sa.Engine) -> None:
    jet = Client(shop.bridge, headers={'Authorization': f'Bearer {TOKEN}'})
    jet.headers = {'Authorization': f'Bearer {TOKEN}'}  # no Accept: problem+json, as Jet Admin's client sends
    run = shop.execute('transfer', **TRANSFER).json['run']
    with Session(engine) as session, session.begin():
        session.get_one(Account, 7).balance = Decimal('1.00')
    conflict = jet.message('undo_run', {'run': run})
    assert conflict.status_code == 409
    assert conflict.json['error_code'] == 'undo_conflict' and conflict.json['detail'].startswith('1 of the values')
    assert conflict.json['conflicts'][0]['id'] == 7
    refused = jet.message('undo_run', {'run': 12345})
    assert refused.status_code == 404 and refused.json['error_code'] == 'not_found'
    dry = jet.message('execute_action', {'name': 'mail_statement', 'model': 'accounts', 'ids': [7], 'dry_run': True})
    assert dry.status_code == 400
    assert dry.json == {'non_field_errors': ["'mail_statement' cannot be previewed: it was declared with preview=False"]}


class InheritanceBase(DeclarativeBase):
    pass


class Person(InheritanceBase):
    __tablename__ = 'people'
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(50))
    kind: Mapped[str] = mapped_column(sa.String(20))
    __mapper_args__ = {'polymorphic_on': 'kind', 'polymorphic_identity': 'person'}  # noqa: RUF012


class Engineer(Person):
    __tablename__ = 'engineers'
    id: Mapped[int] = mapped_column(sa.ForeignKey('people.id'), primary_key=True)
    language: Mapped[str] = mapped_column(sa.String(20))
    __mapper_args__ = {'polymorphic_identity': 'engineer'}  # noqa: RUF012


def test_joined_inheritance_rows_are_captured_and_undone_across_both_tables(engine: sa.Engine) -> None:
    migrations.upgrade(engine)
    InheritanceBase.metadata.create_all(engine)
    try:
        with Session(engine) as session, session.begin():
            session.add(Engineer(id=1, name='Ada', language='py'))
        bridge = Bridge(InheritanceBase, engine=engine, token=TOKEN, audit=True)

        @bridge.action(model=Engineer, for_instance=True)
        def retrain(engineer: Engineer, session: Session) -> None:
            engineer.name = 'Ada L.'  # a column of the parent table
            engineer.language = 'rust'  # a column of the child table
            session.add(Engineer(id=2, name='Bob', language='go'))

        client = Client(bridge)
        result = client.execute('retrain', 'engineers', ids='1')
        assert result.status_code == 200, result.text
        changes = client.message('get_run', {'run': result.json['run']}).json['changes']
        assert changes == [
            {'collection': 'engineers', 'id': 1, 'op': 'update',
             'fields': {'name': ['Ada', 'Ada L.'], 'language': ['py', 'rust']}},
            {'collection': 'engineers', 'id': 2, 'op': 'insert',
             'fields': {'id': 2, 'name': 'Bob', 'kind': 'engineer', 'language': 'go'}},
        ]
        assert client.message('undo_run', {'run': result.json['run']}).status_code == 200
        with Session(engine) as session:
            assert [(e.id, e.name, e.language) for e in session.scalars(sa.select(Engineer))] == [(1, 'Ada', 'py')]
            assert session.scalars(sa.select(Person.id)).all() == [1]
    finally:
        InheritanceBase.metadata.drop_all(engine)


def test_a_scoped_session_handed_out_again_carries_no_capture_of_an_earlier_run(engine: sa.Engine) -> None:
    """An app's scoped_session gives every run of a thread the same Session: a capture must leave with its run."""
    from sqlalchemy.orm import scoped_session, sessionmaker

    seed(engine)
    scoped = scoped_session(sessionmaker(engine, expire_on_commit=False))
    try:
        shop = Shop(Bridge(models_base(), session_factory=scoped, token=TOKEN))
        first = shop.dry('zero_all', 'accounts')
        second = shop.dry('zero_all', 'accounts')
        assert first.status_code == second.status_code == 200, second.text
        assert second.json['changes'] == first.json['changes']  # recorded once, by this run's capture only
        session = scoped()
        for name in ('before_flush', 'after_flush', 'do_orm_execute'):
            assert not getattr(session.dispatch, name), f'a {name} listener outlived its run'
    finally:
        scoped.remove()


def models_base() -> type[DeclarativeBase]:
    from .models import Base
    return Base


# -- background actions ------------------------------------------------------------------------------


def test_a_dry_run_of_a_background_action_runs_its_first_chunk_only_and_says_so(
        engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> None:
    from jet_sqla.jobs import job_table

    from .jobs_helpers import add_counters, counter_values

    migrations.upgrade(engine)
    add_counters(engine, 25)
    bridge = make_bridge(audit=True)
    seen: list[tuple[bool, list[int]]] = []

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
    def bump(counters: list[Counter], ctx: ActionContext) -> None:
        seen.append((ctx.dry_run, [counter.id for counter in counters]))
        for counter in counters:
            counter.value += 1

    client = Client(bridge)
    before = counter_values(engine)
    listed = client.message('execute_action', {'name': 'bump', 'model': 'counters', 'dry_run': True,
                                               'ids': list(range(25, 0, -1))})
    assert listed.status_code == 200, listed.text
    assert listed.json['first_chunk_only'] is True and listed.json['chunk_size'] == 10
    assert [change['id'] for change in listed.json['changes']] == list(range(1, 11))
    assert listed.json['counts'] == {'counters': {'insert': 0, 'update': 10, 'delete': 0}}
    everything = client.message('execute_action', {'name': 'bump', 'model': 'counters', 'dry_run': True,
                                                   'inverseIds': True, 'ids': [1]})
    assert everything.status_code == 200, everything.text
    # The first chunk of "all but 1", cut by key range as the job cuts it.
    assert [change['id'] for change in everything.json['changes']] == list(range(2, 11))
    assert seen == [(True, list(range(1, 11))), (True, list(range(2, 11)))]
    assert counter_values(engine) == before  # rolled back
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(job_table)) == 0  # no job was queued


def test_each_chunk_of_a_background_job_records_its_changes(engine: sa.Engine,
                                                            make_bridge: Callable[..., Bridge]) -> None:
    from .jobs_helpers import add_counters, wait_for_job

    migrations.upgrade(engine)
    add_counters(engine, 25)
    bridge = make_bridge(audit=True)

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
    def bump(counters: list[Counter]) -> None:
        for counter in counters:
            counter.value += 1

    client = Client(bridge)
    accepted = client.message('execute_action', {'name': 'bump', 'model': 'counters', 'inverseIds': True})
    assert accepted.status_code == 200, accepted.text
    state = wait_for_job(lambda job: client.message('get_job', {'job': job}).json, accepted.json['job'])
    assert state['status'] == 'succeeded'
    chunks = [row for row in log_rows(engine) if row['action'] == 'bump' and row['outcome'] == 'success']
    changed = sorted(change['id'] for row in chunks for change in json.loads(row['changes'])['changes'])
    assert len(chunks) == 3 and changed == list(range(1, 26))
