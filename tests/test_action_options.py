"""get_field_options for an action's own form fields: Enum params, ForeignKey params, custom providers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge, Option, Param
from jet_sqla.options import stable_color

from .conftest import Client, StatementLog
from .models import Account, Tag, Tier, User
from .test_params import Size

CITIES = {'italy': ['Rome', 'Milan', 'Turin'], 'uk': ['London', 'Leeds']}


def options(client: Client, action: str, field: str, **params: Any) -> list[dict[str, Any]]:
    result = client.message('get_field_options', {'action': action, 'field': field, **params})
    assert result.status_code == 200, result.text
    return list(result.json)


def add_users(engine: sa.Engine, *names: str) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=name, tier=Tier.GOLD if i % 2 else Tier.BRONZE)
                        for i, name in enumerate(names, 1))


def declare_order(bridge: Bridge) -> Any:
    """An action with an Enum, a ForeignKey, fixed choices and a free text field."""

    @bridge.action()
    def order(
        customer: User, tier: Tier, size: Size, country: Annotated[str, Param(options=list(CITIES))],
        city: str, note: str = '', account: Account | None = None,
    ) -> None: ...

    return order


class TestDerived:
    def test_one_enum_one_set_of_labels_and_colors(self, bridge: Bridge, client: Client) -> None:
        """The Enum column offers what it stores (names) and the param what it accepts (values);
        each member reads and looks the same on both sides, and the members' colors differ."""
        declare_order(bridge)
        column = client.message('get_field_options', {'model': 'users', 'field': 'tier'}).json
        param = options(client, 'order', 'tier')
        assert [o['value'] for o in column] == ['BRONZE', 'GOLD']
        assert [o['value'] for o in param] == ['bronze', 'gold']
        assert [(o['name'], o['color']) for o in column] == [(o['name'], o['color']) for o in param]
        assert len({o['color'] for o in param}) == len(param)

    def test_enum_param(self, bridge: Bridge, client: Client) -> None:
        declare_order(bridge)
        tiers = options(client, 'order', 'tier')
        assert [(o['value'], o['name']) for o in tiers] == [('bronze', 'Bronze'), ('gold', 'Gold')]
        assert options(client, 'order', 'tier', q='GO') == tiers[1:]
        assert options(client, 'order', 'tier', limit=1) == tiers[:1]
        assert options(client, 'order', 'tier', limit=1, offset=1) == tiers[1:]
        assert [o['value'] for o in options(client, 'order', 'size')] == [1, 2]
        # What get_action_list sends is what get_field_options serves.
        (action,) = client.message('get_action_list').json
        assert next(p for p in action['params'] if p['name'] == 'tier')['params']['options'] == tiers

    def test_fixed_choices_param(self, bridge: Bridge, client: Client) -> None:
        declare_order(bridge)
        assert [(o['value'], o['name']) for o in options(client, 'order', 'country')] == [
            ('italy', 'italy'), ('uk', 'uk')]
        assert [o['value'] for o in options(client, 'order', 'country', q='U')] == ['uk']

    def test_foreign_key_param_rows_with_labels(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 'Ada', 'Alan', 'Grace', 'Barbara')
        declare_order(bridge)
        assert options(client, 'order', 'customer') == [
            {'value': i, 'name': name, 'color': stable_color(i)}
            for i, name in enumerate(['Ada', 'Alan', 'Grace', 'Barbara'], 1)
        ]

    def test_foreign_key_param_q_limit_offset(self, bridge: Bridge, client: Client, engine: sa.Engine,
                                              statements: StatementLog) -> None:
        add_users(engine, 'Ada', 'Alan', 'Grace', 'Barbara', 'Dalai')
        declare_order(bridge)
        assert [o['name'] for o in options(client, 'order', 'customer', q='AL')] == ['Alan', 'Dalai']
        assert [o['name'] for o in options(client, 'order', 'customer', q='a', limit=2)] == ['Ada', 'Alan']
        assert [o['name'] for o in options(client, 'order', 'customer', q='a', limit=2, offset=2)] == [
            'Grace', 'Barbara']
        assert options(client, 'order', 'customer', q='100%') == []  # wildcards are literal
        with statements:
            assert len(options(client, 'order', 'customer', limit=3)) == 3
        (select,) = statements.statements
        assert 'LIMIT' in select.upper()

    def test_optional_foreign_key_and_other_key_types(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, 'Ada')
        with Session(engine) as session, session.begin():
            session.add_all([Account(id=7, owner_id=1, balance=Decimal('1')), Tag(code='py', title='Python')])

        @bridge.action()
        def label(tag: Tag, account: Account | None = None) -> None: ...

        assert options(client, 'label', 'tag') == [{'value': 'py', 'name': 'Python', 'color': stable_color('py')}]
        assert [(o['value'], o['name']) for o in options(client, 'label', 'account')] == [(7, '7')]


class TestCustom:
    def test_provider_depends_on_the_form(self, bridge: Bridge, client: Client) -> None:
        order = declare_order(bridge)

        @bridge.field_options(order, 'city')
        def cities(form: dict[str, Any], q: str | None) -> list[Option]:
            found = CITIES.get(str(form.get('country')), [])
            return [Option(city.lower(), city) for city in found if not q or q.lower() in city.lower()]

        assert [o['name'] for o in options(client, 'order', 'city', form={'country': 'italy'})] == [
            'Rome', 'Milan', 'Turin']
        assert [o['name'] for o in options(client, 'order', 'city', form={'country': 'uk'})] == ['London', 'Leeds']
        assert [o['name'] for o in options(client, 'order', 'city', form={'country': 'italy'}, q='TU')] == ['Turin']
        assert options(client, 'order', 'city') == []
        (rome, *_) = options(client, 'order', 'city', form={'country': 'italy'})
        assert rome == {'value': 'rome', 'name': 'Rome', 'color': stable_color('rome')}

    def test_provider_overrides_derived_foreign_key_rows(self, bridge: Bridge, client: Client,
                                                         engine: sa.Engine) -> None:
        add_users(engine, 'Ada', 'Alan', 'Grace')
        order = declare_order(bridge)

        @bridge.field_options(order, 'customer')
        def customers(session: Session, form: dict[str, Any], limit: int, offset: int) -> list[dict[str, Any]]:
            wanted = Tier[form['tier']] if form.get('tier') else None
            statement = sa.select(User).order_by(User.id).limit(limit).offset(offset)
            if wanted is not None:
                statement = statement.where(User.tier == wanted)
            return [{'value': user.id, 'name': f'{user.name} ({user.tier.value})', 'color': 'green'}
                    for user in session.scalars(statement)]

        assert options(client, 'order', 'customer', form={'tier': 'GOLD'}) == [
            {'value': 1, 'name': 'Ada (gold)', 'color': 'green'}, {'value': 3, 'name': 'Grace (gold)', 'color': 'green'}]
        assert [o['value'] for o in options(client, 'order', 'customer', form={'tier': 'BRONZE'})] == [2]
        assert [o['value'] for o in options(client, 'order', 'customer', limit=1, offset=1)] == [2]

    def test_provider_answers_a_field_with_no_derived_options(self, bridge: Bridge, client: Client) -> None:
        order = declare_order(bridge)
        missing = client.message('get_field_options', {'action': 'order', 'field': 'note'})
        assert missing.status_code == 404
        assert missing.json['code'] == 'not_found' and "'note'" in missing.json['detail']

        bridge.field_options(order, 'note')(lambda: [Option('urgent', 'Urgent', color='red')])
        assert options(client, 'order', 'note') == [{'value': 'urgent', 'name': 'Urgent', 'color': 'red'}]

    def test_provider_follows_the_action_name_not_the_function_name(self, bridge: Bridge, client: Client) -> None:
        @bridge.action(name='transfer_money')
        def transfer(currency: str) -> None: ...

        @bridge.action()
        def other(currency: str) -> None: ...

        bridge.field_options(transfer, 'currency')(lambda: ['EUR', 'GBP'])
        assert [o['value'] for o in options(client, 'transfer_money', 'currency')] == ['EUR', 'GBP']
        assert client.message('get_field_options', {'action': 'other', 'field': 'currency'}).status_code == 404
        unknown = client.message('get_field_options', {'action': 'transfer', 'field': 'currency'})
        assert unknown.status_code == 404 and "'transfer'" in unknown.json['detail']

    def test_action_provider_does_not_answer_a_column_of_the_same_name(self, bridge: Bridge, client: Client) -> None:
        @bridge.action(model=User)
        def retier(tier: str) -> None: ...

        bridge.field_options(retier, 'tier')(lambda: ['custom'])
        assert [o['value'] for o in options(client, 'retier', 'tier')] == ['custom']
        column = client.message('get_field_options', {'model': 'users', 'field': 'tier'})
        assert [o['value'] for o in column.json] == ['BRONZE', 'GOLD']

    def test_declaration_errors(self, bridge: Bridge) -> None:
        order = declare_order(bridge)

        def undeclared(city: str) -> None: ...

        with pytest.raises(ValueError, match='neither a mapped class, a collection, nor a declared action'):
            bridge.field_options(undeclared, 'city')
        with pytest.raises(ValueError, match="action 'order' has no param 'town'"):
            bridge.field_options(order, 'town')(lambda: [])
        bridge.field_options(order, 'city')(lambda: [])
        with pytest.raises(ValueError, match="action 'order' already has an options function for 'city'"):
            bridge.field_options(order, 'city')(lambda: [])


class TestErrors:
    @pytest.mark.parametrize(('params', 'status', 'expected'), [
        ({'action': 'nope', 'field': 'x'}, 404, "Unknown action 'nope'"),
        ({'action': 'order', 'field': 'nope'}, 404, "Action 'order' has no field 'nope'"),
        ({'action': 'order', 'field': 'city'}, 404, "Field 'city' of 'order' has no options"),
    ])
    def test_unknown_is_404_naming_it(self, bridge: Bridge, client: Client, params: dict[str, Any], status: int,
                                      expected: str) -> None:
        declare_order(bridge)
        result = client.message('get_field_options', params)
        assert result.status_code == status
        assert result.json == {'type': 'about:blank', 'title': 'Not Found', 'status': 404, 'detail': expected, 'code': 'not_found'}

    @pytest.mark.parametrize(('params', 'field'), [
        ({'limit': 0}, 'limit'), ({'offset': -1}, 'offset'), ({'q': 5}, 'q'), ({'form': 'italy'}, 'form'),
        ({'after': 'x'}, 'after'),
    ])
    def test_bad_paging_params_are_400(self, bridge: Bridge, client: Client, params: dict[str, Any],
                                       field: str) -> None:
        declare_order(bridge)
        result = client.message('get_field_options', {'action': 'order', 'field': 'customer', **params})
        assert result.status_code == 400, result.text
        assert result.json['code'] == 'invalid_params'
        assert list(result.json['fields']) == [field]
