"""Typed action params: the form from the signature, validation, coercion, ForeignKey loading and locking."""

from __future__ import annotations

import enum
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Optional

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import ActionContext, Bridge, Field, Param
from jet_sqla.options import distinct_colors, stable_color

from . import models
from .conftest import TOKEN, Client, StatementLog
from .models import Account, Document, Tag, Tier, User


class Size(enum.Enum):
    """An Enum whose values are not strings."""

    SMALL = 1
    LARGE = 2


class NotMapped:
    """A class jet_sqla knows nothing about."""


def add_accounts(engine: sa.Engine, *balances: str) -> None:
    """User 1 owns one account per balance, ids 1, 2, …"""
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
        session.flush()
        session.add_all(Account(id=i, owner_id=1, balance=Decimal(b)) for i, b in enumerate(balances, 1))


def balances(engine: sa.Engine) -> dict[int, Decimal]:
    with Session(engine) as session:
        return {account.id: account.balance for account in session.scalars(sa.select(Account))}


def described(client: Client, action: str) -> list[dict[str, Any]]:
    result = client.message('get_action_list')
    assert result.status_code == 200, result.text
    (found,) = [item for item in result.json if item['name'] == action]
    params: list[dict[str, Any]] = found['params']
    return params


def enum_options(enum_class: type[enum.Enum], *pairs: tuple[Any, str]) -> list[dict[str, Any]]:
    """An Enum param's options: its values and labels as given, colored as its Enum column is (by member name)."""
    colors = distinct_colors([member.name for member in enum_class])
    return [{'value': value, 'name': name, 'color': color} for (value, name), color in zip(pairs, colors, strict=True)]


def declare_every_type(bridge: Bridge, seen: dict[str, Any]) -> None:
    """An action with one param per row of the annotation table; it records what it received."""

    @bridge.action()
    def typed(
        flag: bool, count: int, ratio: float, amount: Decimal, title: str, at: datetime, day: date,
        moment: time, data: dict[str, Any], items: list[Any], tier: Tier, account: Account,
    ) -> dict[str, str]:
        seen.update(flag=flag, count=count, ratio=ratio, amount=amount, title=title, at=at, day=day,
                    moment=moment, data=data, items=items, tier=tier, account=account)
        account.balance += amount  # a live instance of the action's session: this is committed
        return {'balance': str(account.balance)}


VALID_FORM: dict[str, Any] = {
    'flag': 'true', 'count': '7', 'ratio': '2.5', 'amount': '12.30', 'title': 'hello',
    'at': '2024-05-01T10:30:00+02:00', 'day': '2024-05-01', 'moment': '13:45:10',
    'data': '{"a": [1, 2]}', 'items': '[1, "x"]', 'tier': 'GOLD', 'account': '1',
}


class TestDescribed:
    def test_every_annotation_of_the_table(self, bridge: Bridge, client: Client) -> None:
        declare_every_type(bridge, {})
        plain = [('flag', 'BooleanField'), ('count', 'IntegerField'), ('ratio', 'FloatField'),
                 ('amount', 'DecimalField'), ('title', 'CharField'), ('at', 'DateTimeField'),
                 ('day', 'DateField'), ('moment', 'TimeField'), ('data', 'JSONField'), ('items', 'JSONField')]
        assert described(client, 'typed') == [
            *({'name': name, 'field': field, 'required': True, 'params': {}} for name, field in plain),
            {'name': 'tier', 'field': 'SelectField', 'required': True,
             'params': {'options': enum_options(Tier, ('bronze', 'Bronze'), ('gold', 'Gold'))}},
            {'name': 'account', 'field': 'ForeignKey', 'required': True,
             'params': {'related_model': {'model': 'accounts'}}},
        ]

    def test_all_sixteen_field_names_with_labels_and_descriptions(self, bridge: Bridge, client: Client) -> None:
        @bridge.action()
        def explicit(
            a: Annotated[bool, Param(field='BooleanField', label='A', description='about a')],
            b: Annotated[str, Param(field='TranslatableField', label='B', description='about b')],
            c: Annotated[Size, Param(field='SelectField', label='C', description='about c')],
            d: Annotated[User, Param(field='ForeignKey', label='D', description='about d')],
            e: Annotated[datetime, Param(field='DateTimeField', label='E', description='about e')],
            f: Annotated[datetime, Param(field='TimestampField', label='F', description='about f')],
            g: Annotated[date, Param(field='DateField', label='G', description='about g')],
            h: Annotated[time, Param(field='TimeField', label='H', description='about h')],
            i: Annotated[list[int], Param(field='JSONField', label='I', description='about i')],
            j: Annotated[str, Param(field='SqlField', label='J', description='about j')],
            k: Annotated[str, Param(field='CodeField', label='K', description='about k')],
            l: Annotated[str, Param(field='CharField', label='L', description='about l')],  # noqa: E741
            m: Annotated[str, Param(field='TextField', label='M', description='about m')],
            n: Annotated[int, Param(field='IntegerField', label='N', description='about n')],
            o: Annotated[float, Param(field='FloatField', label='O', description='about o')],
            p: Annotated[Decimal, Param(field='DecimalField', label='P', description='about p')],
        ) -> None: ...

        params = described(client, 'explicit')
        assert [param['field'] for param in params] == [field.value for field in Field]
        assert len({param['field'] for param in params}) == 16
        for param in params:
            name = param['name']
            assert (param['label'], param['description'], param['required']) == (name.upper(), f'about {name}', True)
        by_name = {param['name']: param for param in params}
        assert by_name['c']['params'] == {'options': enum_options(Size, (1, 'Small'), (2, 'Large'))}
        assert by_name['d']['params'] == {'related_model': {'model': 'users'}}

    def test_field_given_as_member_or_member_name(self, bridge: Bridge, client: Client) -> None:
        @bridge.action()
        def styles(a: Annotated[str, Param(field=Field.CODE)], b: Annotated[str, Param(field='SQL')]) -> None: ...

        assert [param['field'] for param in described(client, 'styles')] == ['CodeField', 'SqlField']

    def test_defaults_and_optional_make_fields_not_required(self, bridge: Bridge, client: Client) -> None:
        @bridge.action()
        def optional(
            x: int | None,
            y: Annotated[Decimal | None, Param(label='Y')],
            z: Annotated[Account, Param(label='Z')] | None,
            a: int = 5,
            b: Decimal | None = None,
            c: Optional[date] = None,  # noqa: UP007 - the old spelling must work too
            d: Annotated[str, Param(field='TextField')] = '',
            e: Account | None = None,
            f: Annotated[Tier | None, Param(label='Tier')] = None,
            g: Annotated[int, Param(label='G')] | None = None,
            h: datetime | None = None,
            i: Annotated[int, Param(required=False)] = 0,
            j: Annotated[int, Param(required=True)] = 3,
            k: str = 'x',
        ) -> None: ...

        required = {param['name']: param['required'] for param in described(client, 'optional')}
        assert required == {name: name == 'j' for name in 'xyzabcdefghijk'}

    def test_explicit_params_for_kwargs(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_accounts(engine, '10.00', '20.00')
        seen: list[dict[str, Any]] = []

        @bridge.action(params=[
            Param('account', type=Account, label='Account'),
            Param('amount', type=Decimal, description='How much'),
            Param('note', field='TextField', required=False),
            Param('count', field='IntegerField', default=3),
            Param('tier', type=Tier),
            Param('size', type=Size | None),
            Param('color', options=['red', ('blue', 'Blue', 'blue')]),
            Param('owner', type='users', required=False),
        ])
        def explicit(**params: Any) -> None:
            seen.append(params)

        assert described(client, 'explicit') == [
            {'name': 'account', 'field': 'ForeignKey', 'required': True, 'label': 'Account',
             'params': {'related_model': {'model': 'accounts'}}},
            {'name': 'amount', 'field': 'DecimalField', 'required': True, 'description': 'How much', 'params': {}},
            {'name': 'note', 'field': 'TextField', 'required': False, 'params': {}},
            {'name': 'count', 'field': 'IntegerField', 'required': False, 'params': {}},
            {'name': 'tier', 'field': 'SelectField', 'required': True,
             'params': {'options': enum_options(Tier, ('bronze', 'Bronze'), ('gold', 'Gold'))}},
            {'name': 'size', 'field': 'SelectField', 'required': False,
             'params': {'options': enum_options(Size, (1, 'Small'), (2, 'Large'))}},
            {'name': 'color', 'field': 'SelectField', 'required': True,
             'params': {'options': [{'value': 'red', 'name': 'red', 'color': stable_color('red')},
                                    {'value': 'blue', 'name': 'Blue', 'color': 'blue'}]}},
            {'name': 'owner', 'field': 'ForeignKey', 'required': False,
             'params': {'related_model': {'model': 'users'}}},
        ]
        result = client.execute('explicit', account='2', amount='0.10', tier='gold', size='2', color='blue')
        assert result.status_code == 200, result.text
        (params,) = seen
        assert isinstance(params.pop('account'), Account)
        assert params == {'amount': Decimal('0.10'), 'note': None, 'count': 3, 'tier': Tier.GOLD,
                          'size': Size.LARGE, 'color': 'blue', 'owner': None}
        bad = client.execute('explicit', account='2', amount='1', tier='gold', color='green')
        assert bad.status_code == 400
        assert bad.json['fields'] == {'color': "'green' is not one of 'red', 'blue'"}


class TestCoerced:
    def test_strings_become_python_values(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_accounts(engine, '100.00')
        seen: dict[str, Any] = {}
        declare_every_type(bridge, seen)

        result = client.execute('typed', **VALID_FORM)
        assert result.status_code == 200, result.text
        assert result.json == {'result': True, 'balance': '112.30'}
        assert seen['flag'] is True
        assert seen['count'] == 7 and type(seen['count']) is int
        assert seen['ratio'] == 2.5 and type(seen['ratio']) is float
        assert seen['amount'].as_tuple() == Decimal('12.30').as_tuple()  # exact, trailing zero kept
        assert seen['title'] == 'hello'
        assert seen['at'] == datetime(2024, 5, 1, 8, 30, tzinfo=timezone.utc)
        assert seen['at'].utcoffset() == timedelta(hours=2)  # aware stays aware, in its own offset
        assert seen['day'] == date(2024, 5, 1) and type(seen['day']) is date
        assert seen['moment'] == time(13, 45, 10)
        assert seen['data'] == {'a': [1, 2]}
        assert seen['items'] == [1, 'x']
        assert seen['tier'] is Tier.GOLD
        assert isinstance(seen['account'], Account) and seen['account'].id == 1
        assert balances(engine) == {1: Decimal('112.30')}

    def test_json_native_values(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_accounts(engine, '1.00')
        seen: dict[str, Any] = {}
        declare_every_type(bridge, seen)

        form = {**VALID_FORM, 'flag': False, 'count': 7, 'ratio': 2, 'amount': 0.1, 'data': {'k': None},
                'items': [], 'tier': 'gold', 'account': 1, 'at': '2024-05-01T10:30:00Z', 'moment': '13:45'}
        result = client.execute('typed', **form)
        assert result.status_code == 200, result.text
        assert seen['flag'] is False
        assert seen['count'] == 7
        assert seen['ratio'] == 2.0 and type(seen['ratio']) is float
        assert seen['amount'].as_tuple() == Decimal('0.1').as_tuple()  # not 0.1000000000000000055…
        assert (seen['data'], seen['items'], seen['tier']) == ({'k': None}, [], Tier.GOLD)
        assert seen['at'].tzinfo is not None and seen['at'].utcoffset() == timedelta(0)
        assert seen['moment'] == time(13, 45)
        assert balances(engine) == {1: Decimal('1.10')}

    def test_naive_datetime_stays_naive_and_aware_time_stays_aware(self, bridge: Bridge, client: Client) -> None:
        seen: list[Any] = []

        @bridge.action()
        def moments(at: datetime, moment: time) -> None:
            seen.extend([at, moment])

        assert client.execute('moments', at='2024-05-01 10:30:15.250', moment='13:45:10+02:00').status_code == 200
        assert seen[0] == datetime(2024, 5, 1, 10, 30, 15, 250000) and seen[0].tzinfo is None
        assert seen[1].utcoffset() == timedelta(hours=2)

    def test_sixteen_fields_coerce_by_their_type(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        with Session(engine) as session, session.begin():
            session.add(User(id=4, name='Grace'))
        seen: dict[str, Any] = {}

        @bridge.action()
        def explicit(
            a: Annotated[bool, Param(field='BooleanField')],
            b: Annotated[str, Param(field='TranslatableField')],
            c: Annotated[Size, Param(field='SelectField')],
            d: Annotated[User, Param(field='ForeignKey')],
            f: Annotated[datetime, Param(field='TimestampField')],
            i: Annotated[list[int], Param(field='JSONField')],
            j: Annotated[str, Param(field='SqlField')],
            k: Annotated[str, Param(field='CodeField')],
            m: Annotated[str, Param(field='TextField')],
            z: Annotated[datetime, Param(field='TimestampField')],
        ) -> None:
            seen.update(locals())

        result = client.execute('explicit', a='off', b='Bonjour', c='LARGE', d='4', f=1714550400,
                                i='[3, 4]', j='SELECT 1', k='print(1)', m='line 1\nline 2', z='2024-05-01T08:00:00')
        assert result.status_code == 200, result.text
        assert seen['a'] is False and seen['c'] is Size.LARGE
        assert isinstance(seen['d'], User) and seen['d'].name == 'Grace'
        assert seen['f'] == datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
        assert seen['z'] == datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)  # a timestamp is always aware
        assert (seen['b'], seen['i'], seen['j'], seen['k'], seen['m']) == (
            'Bonjour', [3, 4], 'SELECT 1', 'print(1)', 'line 1\nline 2')

    @pytest.mark.parametrize('given', ['gold', 'GOLD'])
    def test_enum_by_value_or_name(self, bridge: Bridge, client: Client, given: str) -> None:
        seen: list[Any] = []

        @bridge.action()
        def pick(tier: Tier, size: Size) -> None:
            seen.append((tier, size))

        assert client.execute('pick', tier=given, size='SMALL').status_code == 200
        assert client.execute('pick', tier=given, size=2).status_code == 200
        assert client.execute('pick', tier=given, size='2').status_code == 200
        assert seen == [(Tier.GOLD, Size.SMALL), (Tier.GOLD, Size.LARGE), (Tier.GOLD, Size.LARGE)]

    def test_defaults_apply_when_left_empty(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_accounts(engine, '5.00')
        seen: list[dict[str, Any]] = []

        @bridge.action()
        def optional(
            owner: Annotated[User, Param(label='Owner')] | None,
            count: int = 5, amount: Decimal | None = None, account: Account | None = None,
            note: Annotated[str, Param(field='TextField')] = 'none', when: datetime | None = None,
        ) -> None:
            assert owner is None
            seen.append({'count': count, 'amount': amount, 'account': account, 'note': note, 'when': when})

        for form in ({}, {'count': None, 'amount': '', 'account': '', 'when': None},
                     {'count': '', 'amount': None, 'account': None, 'note': None}):
            assert client.execute('optional', **form).status_code == 200
        assert seen == [{'count': 5, 'amount': None, 'account': None, 'note': 'none', 'when': None}] * 3
        assert client.execute('optional', note='', account=1).status_code == 200
        assert seen[-1]['note'] == '' and isinstance(seen[-1]['account'], Account)  # '' is a text value

    def test_fixed_choices_compare_as_coerced_values(self, bridge: Bridge, client: Client) -> None:
        seen: list[Any] = []

        @bridge.action()
        def rate(value: Annotated[Decimal, Param(options=['1.50', 2])]) -> None:
            seen.append(value)

        assert client.execute('rate', value='1.5').status_code == 200
        assert client.execute('rate', value=2.0).status_code == 200
        assert seen == [Decimal('1.50'), Decimal('2')]
        bad = client.execute('rate', value='3')
        assert (bad.status_code, bad.json['fields']) == (400, {'value': "'3' is not one of '1.50', 2"})

    def test_string_and_uuid_keys(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        with Session(engine) as session, session.begin():
            session.add(Tag(code='py', title='Python'))
            session.flush()  # no relationship tells the unit of work to insert the tag first
            document = Document(headline='hello', tag_code='py')
            session.add(document)
            session.flush()
            document_id = str(document.id)
        seen: list[Any] = []

        @bridge.action()
        def link(tag: Tag, document: Document, token: uuid.UUID) -> None:
            seen.extend([tag.title, document.headline, token])

        token = uuid.uuid4()
        result = client.execute('link', tag='py', document=document_id, token=str(token))
        assert result.status_code == 200, result.text
        assert seen == ['Python', 'hello', token]
        bad = client.execute('link', tag='py', document='nope', token='nope')
        assert bad.status_code == 400
        assert bad.json['fields'] == {'document': "'nope' is not a valid UUID", 'token': "'nope' is not a valid UUID"}

    def test_unknown_keys_are_ignored_and_logged_at_debug(self, bridge: Bridge, client: Client,
                                                         caplog: pytest.LogCaptureFixture) -> None:
        seen: list[int] = []

        @bridge.action()
        def count(n: int) -> None:
            seen.append(n)

        caplog.set_level(logging.DEBUG, logger='jet_sqla.forms')
        result = client.execute('count', n='3', surprise='x', other=1, ids='')
        assert result.status_code == 200, result.text
        assert seen == [3]
        (record,) = [r for r in caplog.records if r.name == 'jet_sqla.forms']
        assert record.levelno == logging.DEBUG
        assert record.getMessage() == 'ignoring unknown form keys: other, surprise'


# Each row: the param, a bad value, the reason sent back.
BAD_VALUES: list[tuple[str, Any, str]] = [
    ('flag', 'maybe', "'maybe' is not a valid boolean"),
    ('flag', 2, '2 is not a valid boolean'),
    ('flag', [], '[] is not a valid boolean'),
    ('count', 'seven', "'seven' is not a valid integer"),
    ('count', '1.5', "'1.5' is not a valid integer"),
    ('count', 1.5, '1.5 is not a valid integer'),
    ('count', True, 'expected an integer, got a boolean'),
    ('count', 2**70, f'{2**70} is out of range'),
    ('ratio', 'abc', "'abc' is not a valid number"),
    ('ratio', 'nan', 'must be a finite number'),
    ('ratio', 'inf', 'must be a finite number'),
    ('ratio', '1_0', "'1_0' is not a valid number"),
    ('ratio', {}, 'expected a number, got an object'),
    ('amount', 'abc', "'abc' is not a valid decimal number"),
    ('amount', 'NaN', 'must be a finite decimal number of reasonable size'),
    ('amount', '1e999999', 'must be a finite decimal number of reasonable size'),
    ('amount', '1_000', "'1_000' is not a valid decimal number"),
    ('amount', True, 'expected a decimal number, got a boolean'),
    ('title', {'a': 1}, 'expected a string, got an object'),
    ('title', ['a'], 'expected a string, got a list'),
    ('title', 'a\x00b', 'must not contain NUL characters'),
    ('at', 'yesterday', "'yesterday' is not a valid ISO 8601 datetime"),
    ('at', '2024-13-01T00:00', "'2024-13-01T00:00' is not a valid ISO 8601 datetime"),
    ('at', 1714550400, 'expected an ISO 8601 datetime string, got int'),
    ('day', '2024-02-30', "'2024-02-30' is not a valid ISO 8601 date"),
    ('day', '01/02/2024', "'01/02/2024' is not a valid ISO 8601 date"),
    ('day', '2024-05-01T10:00', "'2024-05-01T10:00' is not a valid ISO 8601 date"),
    ('moment', '25:00', "'25:00' is not a valid ISO 8601 time"),
    ('moment', 1300, 'expected an ISO 8601 time string, got int'),
    ('data', '[1, 2]', 'expected an object, got a list'),
    ('data', 'not json', 'is not valid JSON'),
    ('data', 'NaN', 'is not valid JSON'),
    ('data', 5, 'expected an object, got int'),
    ('items', '{"a": 1}', 'expected a list, got an object'),
    ('items', {'a': 1}, 'expected a list, got an object'),
    ('tier', 'platinum', "'platinum' is not one of 'bronze', 'gold'"),
    ('tier', True, "True is not one of 'bronze', 'gold'"),
    ('account', 'abc', "'abc' is not a valid integer"),
    ('account', 2**70, f'{2**70} is out of range'),
    ('account', 99, 'no accounts record with id 99'),
    ('account', '99', 'no accounts record with id 99'),
]
MISSING_VALUES: list[Any] = ['<absent>', None, '']


class TestRejected:
    @pytest.mark.parametrize('name', sorted({name for name, _, _ in BAD_VALUES}))
    def test_bad_value_is_400_naming_the_field_and_nothing_runs(
        self, bridge: Bridge, client: Client, engine: sa.Engine, name: str
    ) -> None:
        # PERF: one database per field, not per value; each value still gets its own request and assertions.
        add_accounts(engine, '100.00')
        seen: dict[str, Any] = {}
        declare_every_type(bridge, seen)

        for value, reason in [(value, reason) for field, value, reason in BAD_VALUES if field == name]:
            result = client.execute('typed', **{**VALID_FORM, name: value})
            assert result.status_code == 400, (value, result.text)
            assert result.json == {
                'type': 'about:blank',
                'title': 'Bad Request',
                'status': 400,
                'detail': f'Invalid parameters: {name}: {reason}',
                'code': 'invalid_params',
                'fields': {name: reason},
            }, value
            assert seen == {}
            assert balances(engine) == {1: Decimal('100.00')}

    @pytest.mark.parametrize('missing', MISSING_VALUES)
    def test_required_value_missing_is_400(self, bridge: Bridge, client: Client, engine: sa.Engine, missing: Any) -> None:
        add_accounts(engine, '100.00')
        seen: dict[str, Any] = {}
        declare_every_type(bridge, seen)
        form = {name: value for name, value in VALID_FORM.items() if name not in ('title', 'account')}
        if missing != '<absent>':
            form.update(title=missing, account=missing)

        result = client.execute('typed', **form)
        assert result.status_code == 400
        assert result.json['code'] == 'invalid_params'
        assert result.json['fields'] == {'title': 'this field is required', 'account': 'this field is required'}
        assert seen == {}

    def test_every_bad_field_is_reported_together(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_accounts(engine, '100.00')
        seen: dict[str, Any] = {}
        declare_every_type(bridge, seen)
        bad = {'flag': 'maybe', 'count': 'seven', 'ratio': 'abc', 'amount': 'abc', 'title': {}, 'at': 'x',
               'day': 'x', 'moment': 'x', 'data': 'x', 'items': 'x', 'tier': 'x', 'account': 'x'}

        result = client.execute('typed', **bad)
        assert result.status_code == 400
        assert result.json['code'] == 'invalid_params'
        assert sorted(result.json['fields']) == sorted(bad)
        for name in bad:
            assert f'{name}: ' in result.json['detail']
        assert seen == {}

        half = client.execute('typed', **{**VALID_FORM, 'count': 'x', 'tier': None})
        assert half.json['fields'] == {'count': "'x' is not a valid integer", 'tier': 'this field is required'}

    def test_two_missing_foreign_keys_are_both_named(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_accounts(engine, '10.00', '10.00')

        @bridge.action(lock=True)
        def transfer(source: Account, target: Account, amount: Decimal) -> None:
            raise AssertionError('must not run')

        result = client.execute('transfer', source=7, target=2, amount='1')
        assert result.status_code == 400
        assert result.json['fields'] == {'source': 'no accounts record with id 7'}
        both = client.execute('transfer', source=7, target=8, amount='1')
        assert both.json['fields'] == {'source': 'no accounts record with id 7', 'target': 'no accounts record with id 8'}

    def test_missing_record_ids_are_still_404(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_accounts(engine, '10.00')

        @bridge.action(model=Account, for_instance=True, bulk=True)
        def sweep(accounts: list[Account], into: Account) -> None:
            raise AssertionError('must not run')

        result = client.execute('sweep', ids=[1, 5], into=1)
        assert result.status_code == 404
        assert result.json['code'] == 'records_not_found' and result.json['missing_ids'] == [5]
        both = client.execute('sweep', ids=[1, 5], into=6)  # the form is named first
        assert both.status_code == 400 and both.json['fields'] == {'into': 'no accounts record with id 6'}

    def test_rejected_forms_write_nothing(
        self, bridge: Bridge, client: Client, engine: sa.Engine
    ) -> None:
        add_accounts(engine, '10.00', '20.00')
        calls: list[str] = []

        @bridge.action(lock=True)
        def move(source: Account, target: Account, amount: Decimal, session: Session) -> None:
            calls.append('ran')
            source.balance -= amount
            target.balance += amount

        for form in ({'source': 1, 'target': 2, 'amount': 'lots'}, {'source': 1, 'target': 9, 'amount': '5'},
                     {'source': 1, 'amount': '5'}):
            result = client.execute('move', **form)
            assert result.status_code == 400, result.text
        assert calls == []
        assert balances(engine) == {1: Decimal('10.00'), 2: Decimal('20.00')}
        with Session(engine) as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
        assert client.execute('move', source=1, target=2, amount='5').status_code == 200
        assert balances(engine) == {1: Decimal('5.00'), 2: Decimal('25.00')}


class TestDeclaration:
    """Declaration errors; they do not depend on the database, so one SQLite bridge serves."""

    @pytest.fixture
    def bridge(self) -> Iterator[Bridge]:
        engine = sa.create_engine('sqlite://')
        models.Base.metadata.create_all(engine)
        yield Bridge(models.Base, engine=engine, token=TOKEN)
        engine.dispose()

    @pytest.mark.parametrize('annotation', [set, bytes, object, Any, int | str, tuple[int, int], NotMapped,
                                            Optional[NotMapped], Annotated[bytes, Param(label='x')]],  # noqa: UP007
                             ids=repr)
    def test_unmappable_annotation_names_function_and_parameter(self, bridge: Bridge, annotation: Any) -> None:
        def broken(fine: int, weird: Any) -> None: ...

        broken.__annotations__ = {'fine': int, 'weird': annotation, 'return': None}
        with pytest.raises(TypeError, match=r"broken: parameter 'weird' is annotated .*maps to no Jet field"):
            bridge.action(broken)
        assert bridge.actions.get('broken') is None

    def test_missing_annotation(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match=r"bare: parameter 'x' has no type annotation"):
            @bridge.action()
            def bare(x) -> None: ...  # type: ignore[no-untyped-def]

    def test_unresolvable_annotation_names_the_parameter(self, bridge: Bridge) -> None:
        class Local(enum.Enum):
            A = 'a'

        def local(fine: int, choice: Local) -> None: ...

        with pytest.raises(TypeError, match=r"local: parameter 'choice' is annotated 'Local', which cannot be resolved"):
            bridge.action(local)

    def test_unknown_field_name(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match=r"odd: parameter 'x': unknown field type 'Bogus'"):
            @bridge.action()
            def odd(x: Annotated[str, Param(field='Bogus')]) -> None: ...

    def test_foreign_key_field_needs_a_mapped_class(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match=r"fk: parameter 'x' is a ForeignKey"):
            @bridge.action()
            def fk(x: Annotated[int, Param(field='ForeignKey')]) -> None: ...
        with pytest.raises(TypeError, match=r"^fk2: parameter 'x' is a ForeignKey"):
            bridge.action(params=[Param('x', field='ForeignKey')])(_kwargs_named('fk2'))

    @pytest.mark.parametrize('name', ['ids', 'id', 'idempotency_key'])
    def test_request_keys_are_not_form_fields(self, bridge: Bridge, name: str) -> None:
        function = _kwargs_named('clash')
        with pytest.raises(TypeError, match=rf"^clash: a form field may not be named '{name}'"):
            bridge.action(params=[Param(name, type=int)])(function)

    def test_explicit_params_need_names_and_kwargs(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match=r'^nameless: every Param in params= needs a name'):
            bridge.action(params=[Param(type=int)])(_kwargs_named('nameless'))
        with pytest.raises(TypeError, match='must take \\*\\*kwargs'):
            @bridge.action(params=[Param('n', type=int)])
            def closed() -> None: ...
        with pytest.raises(TypeError, match=r"^twice: two form fields are named 'n'"):
            bridge.action(params=[Param('n', type=int), Param('n', type=str)])(_kwargs_named('twice'))

    def test_context_and_session_are_not_form_fields(self, bridge: Bridge) -> None:
        @bridge.action()
        def plain(ctx: ActionContext, session: Session, n: int) -> None: ...

        action = bridge.actions.get('plain')
        assert action is not None and [field.name for field in action.form] == ['n']


def _kwargs_named(name: str) -> Any:
    def function(**params: Any) -> None: ...

    function.__name__ = function.__qualname__ = name
    return function


def _in_values(parameters: Any) -> list[Any]:
    """The bound values of a statement, in order, whatever the driver's parameter style.

    PostgreSQL gets the ids as one array parameter (``pk = ANY(:ids)``): its elements are the values;
    integer keys come as the array's text, ``{2,3,4}``.
    """
    values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
    if len(values) == 1 and isinstance(values[0], (list, tuple)):
        return list(values[0])
    if len(values) == 1 and isinstance(values[0], str) and values[0].startswith('{') and values[0].endswith('}'):
        return [int(text) for text in values[0][1:-1].split(',') if text]
    return values


class TestForeignKeysLoadedAndLocked:
    def test_foreign_keys_and_ids_load_together_locked_in_pk_order(
        self, bridge: Bridge, client: Client, engine: sa.Engine, statements: StatementLog
    ) -> None:
        add_accounts(engine, '1.00', '2.00', '3.00', '4.00')
        bound: list[tuple[str, list[Any]]] = []

        def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if statements.recording and statement.lstrip().upper().startswith('SELECT'):
                bound.append((statement, _in_values(parameters)))

        sa.event.listen(engine, 'before_cursor_execute', record)

        @bridge.action(model=Account, for_instance=True, bulk=True, lock=True)
        def sweep(accounts: list[Account], into: Account, owner: User) -> dict[str, Any]:
            return {'order': [a.id for a in accounts], 'into': into.id, 'owner': owner.name}

        with statements:
            result = client.execute('sweep', ids=[4, 2], into='3', owner='1')
        assert result.json == {'result': True, 'order': [4, 2], 'into': 3, 'owner': 'Ada'}
        selects = statements.selects()
        assert len(selects) == 2  # accounts (ids and the FK merged), then users: one SELECT per collection
        assert 'accounts' in selects[0] and 'users' in selects[1]
        assert [values for _, values in bound][0][:3] == [2, 3, 4]  # pk order, not request order
        for select in selects:
            assert 'ORDER BY' in select.upper()
            assert ('FOR UPDATE' in select.upper()) == (engine.dialect.name != 'sqlite')

    def test_two_foreign_keys_locked_in_pk_order(self, bridge: Bridge, client: Client, engine: sa.Engine,
                                                statements: StatementLog) -> None:
        add_accounts(engine, '10.00', '10.00', '10.00')
        bound: list[list[Any]] = []
        sa.event.listen(engine, 'before_cursor_execute',
                        lambda conn, cursor, statement, parameters, context, many:
                        bound.append(_in_values(parameters)) if statements.recording else None)

        @bridge.action(lock=True)
        def transfer(source: Account, target: Account, amount: Decimal) -> None:
            source.balance -= amount
            target.balance += amount

        with statements:
            assert client.execute('transfer', source=3, target=1, amount='2.50').status_code == 200
        (select,) = statements.selects()
        assert bound[0][:2] == [1, 3]
        assert ('FOR UPDATE' in select.upper()) == (engine.dialect.name != 'sqlite')
        assert balances(engine) == {1: Decimal('12.50'), 2: Decimal('10.00'), 3: Decimal('7.50')}

    def test_without_lock_no_for_update(self, bridge: Bridge, client: Client, engine: sa.Engine,
                                        statements: StatementLog) -> None:
        add_accounts(engine, '1.00')

        @bridge.action()
        def look(account: Account) -> None: ...

        with statements:
            assert client.execute('look', account=1).status_code == 200
        (select,) = statements.selects()
        assert 'FOR UPDATE' not in select.upper()

    @pytest.mark.parametrize('dialect', ['postgresql', 'mariadb'])  # SQLite locks the whole file, not rows
    def test_locked_row_is_really_locked_while_the_action_runs(self, bridge: Bridge, client: Client,
                                                              engine: sa.Engine) -> None:
        add_accounts(engine, '1.00', '2.00')
        entered, release = threading.Event(), threading.Event()

        @bridge.action(lock=True)
        def hold(account: Account) -> None:
            entered.set()
            release.wait(10)

        client.http  # noqa: B018 - build the app before another thread uses it
        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(client.execute('hold', account=2)))
        worker.start()
        try:
            assert entered.wait(10)
            with engine.connect() as other:
                with pytest.raises(sa.exc.DBAPIError):
                    other.execute(sa.select(Account.id).where(Account.id == 2).with_for_update(nowait=True))
                other.rollback()
                free = other.execute(sa.select(Account.id).where(Account.id == 1).with_for_update(nowait=True))
                assert free.scalar() == 1
                other.rollback()
        finally:
            release.set()
            worker.join(10)
        assert results[0].status_code == 200
