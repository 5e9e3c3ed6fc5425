"""Jet Admin's own request shapes: ids beside the form, "select all" (inverseIds), verbose_name and icon."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import ActionContext, Bridge, migrations
from jet_sqla.audit import action_log
from jet_sqla.declaration import declare_action
from jet_sqla.dialect import read_execute_params
from jet_sqla.errors import InvalidParams

from .conftest import Client, StatementLog
from .models import Counter, User


def add_counters(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(Counter(id=i, value=0) for i in range(count, 0, -1))  # inserted in reverse


def values(engine: sa.Engine) -> dict[int, int]:
    with Session(engine) as session:
        return {counter.id: counter.value for counter in session.scalars(sa.select(Counter))}


def jet_execute(client: Client, action: str, model: str | None = 'counters', **beside: Any) -> Any:
    """execute_action as jet-admin-sdk's action.service.ts sends it: ids beside the form, the form in params."""
    form = beside.pop('form', {})
    params: dict[str, Any] = {'name': action, **beside, 'params': form}
    if model is not None:
        params['model'] = model
    return client.message('execute_action', params)


@pytest.fixture
def touched(bridge: Bridge) -> list[list[int]]:
    """``touch`` (bulk), ``bump`` (one record), ``tidy`` (collection) and ``ping`` (common); runs are recorded."""
    runs: list[list[int]] = []

    @bridge.action(model=Counter, for_instance=True, bulk=True)
    def touch(counters: list[Counter], ctx: ActionContext, step: int = 1) -> dict[str, int]:
        runs.append([counter.id for counter in counters])
        assert ctx.ids == runs[-1]
        for counter in counters:
            counter.value += step
        return {'count': len(counters)}

    @bridge.action(model=Counter, for_instance=True)
    def bump(counter: Counter) -> None:
        runs.append([counter.id])
        counter.value += 1

    @bridge.action(model=Counter)
    def tidy() -> None:
        runs.append([])

    @bridge.action()
    def ping() -> None:
        runs.append([])

    return runs


class TestIdsBesideTheForm:
    def test_ids_beside_the_form_as_jet_admin_sends_them(self, client: Client, engine: sa.Engine,
                                                        touched: list[list[int]]) -> None:
        add_counters(engine, 4)
        result = jet_execute(client, 'touch', ids=[3, 1], inverseIds=False, form={'step': '5'})
        assert (result.status_code, result.json) == (200, {'result': True, 'count': 2})
        assert touched == [[3, 1]]  # request order, as with ids in the form
        assert values(engine) == {1: 5, 2: 0, 3: 5, 4: 0}

    def test_one_id_beside_the_form(self, client: Client, engine: sa.Engine, touched: list[list[int]]) -> None:
        add_counters(engine, 3)
        assert jet_execute(client, 'bump', id=2).status_code == 200
        assert jet_execute(client, 'bump', id='3', form={}).status_code == 200
        assert touched == [[2], [3]]

    @pytest.mark.parametrize(('beside', 'inside', 'ran'), [
        ({'ids': [1, 2]}, {'ids': '2,1'}, [2, 1]),
        ({'ids': '1, 2'}, {'ids': [2, '1']}, [2, 1]),
        ({'id': 2}, {'ids': [2]}, [2]),
        ({'ids': [2]}, {'id': '2'}, [2]),
    ])
    def test_ids_in_both_places_that_agree_run(self, client: Client, engine: sa.Engine, touched: list[list[int]],
                                               beside: dict[str, Any], inside: dict[str, Any], ran: list[int]) -> None:
        add_counters(engine, 2)
        result = jet_execute(client, 'touch', **beside, form=inside)
        assert result.status_code == 200, result.text
        assert touched == [ran]  # in the form's order: the ids are the same records either way

    @pytest.mark.parametrize(('beside', 'inside'), [
        ({'ids': [1, 2]}, {'ids': '1'}),
        ({'id': 1}, {'id': 2}),
        ({'ids': [1]}, {'ids': [1, 3]}),
    ])
    def test_ids_in_both_places_that_differ_are_a_400_naming_ids(
        self, client: Client, engine: sa.Engine, touched: list[list[int]],
        beside: dict[str, Any], inside: dict[str, Any],
    ) -> None:
        add_counters(engine, 3)
        result = jet_execute(client, 'touch', **beside, form=inside)
        assert result.status_code == 400
        assert result.json['code'] == 'invalid_params' and list(result.json['fields']) == ['ids']
        assert 'differ' in result.json['fields']['ids']
        jet = jet_execute(Client(client.bridge, headers={'Authorization': 'Bearer test-token', 'Accept': '*/*'}),
                          'touch', **beside, form=inside)
        # Jet's dialect: ids are no form field, so a general error that names them.
        assert list(jet.json) == ['non_field_errors'] and jet.json['non_field_errors'][0].startswith('ids: ')
        assert 'differ' in jet.json['non_field_errors'][0]
        assert touched == [] and set(values(engine).values()) == {0}

    def test_ids_beside_the_form_of_the_wrong_type_are_a_400(self, client: Client, touched: list[list[int]]) -> None:
        result = jet_execute(client, 'touch', ids={'a': 1})
        assert result.status_code == 400 and 'ids' in result.json['fields']

    def test_the_reader_moves_ids_into_the_form_without_touching_the_input(self) -> None:
        form = {'step': 2}
        merged, inverse = read_execute_params({'name': 'touch', 'ids': [1], 'inverse_ids': 'false'}, form)
        assert (merged, inverse, form) == ({'step': 2, 'ids': [1]}, False, {'step': 2})


class TestSelectAll:
    @pytest.mark.parametrize('flag', [{'inverseIds': True}, {'inverseIds': 'true'}, {'inverse_ids': True},
                                      {'inverseIds': 'TRUE', 'inverse_ids': True}])
    def test_every_record_but_the_listed_in_pk_order(self, client: Client, engine: sa.Engine,
                                                     touched: list[list[int]], flag: dict[str, Any]) -> None:
        add_counters(engine, 7)
        result = jet_execute(client, 'touch', ids=[2, 6], **flag)
        assert (result.status_code, result.json) == (200, {'result': True, 'count': 5}), result.text
        assert touched == [[1, 3, 4, 5, 7]]
        assert values(engine) == {1: 1, 2: 0, 3: 1, 4: 1, 5: 1, 6: 0, 7: 1}

    def test_no_ids_means_the_whole_collection(self, client: Client, engine: sa.Engine,
                                               touched: list[list[int]]) -> None:
        add_counters(engine, 3)
        assert jet_execute(client, 'touch', ids=[], inverseIds=True).status_code == 200
        assert jet_execute(client, 'touch', inverseIds=True, form={'step': 2}).status_code == 200
        assert touched == [[1, 2, 3], [1, 2, 3]]
        assert values(engine) == {1: 3, 2: 3, 3: 3}

    def test_excluded_ids_in_the_form_count_as_well(self, client: Client, engine: sa.Engine,
                                                    touched: list[list[int]]) -> None:
        add_counters(engine, 3)
        assert jet_execute(client, 'touch', inverseIds=True, form={'ids': '1,3'}).status_code == 200
        assert touched == [[2]]

    def test_false_in_any_spelling_is_an_ordinary_request(self, client: Client, engine: sa.Engine,
                                                          touched: list[list[int]]) -> None:
        add_counters(engine, 3)
        for flag in (False, 'false', None, ''):
            assert jet_execute(client, 'touch', ids=[2], inverseIds=flag).status_code == 200
        assert touched == [[2]] * 4

    @pytest.mark.parametrize('flag', [1, 'yes', [True], {'x': 1}])
    def test_a_flag_that_is_not_a_boolean_is_a_400(self, client: Client, touched: list[list[int]], flag: Any) -> None:
        result = jet_execute(client, 'touch', ids=[1], inverseIds=flag)
        assert result.status_code == 400 and list(result.json['fields']) == ['inverseIds']
        assert touched == []

    def test_the_two_spellings_disagreeing_is_a_400(self, client: Client, touched: list[list[int]]) -> None:
        result = jet_execute(client, 'touch', ids=[1], inverseIds=True, inverse_ids=False)
        assert result.status_code == 400 and 'inverseIds' in result.json['fields']

    @pytest.mark.parametrize(('action', 'model'), [('bump', 'counters'), ('tidy', 'counters'), ('ping', None)])
    def test_only_bulk_record_actions_accept_it(self, client: Client, engine: sa.Engine, touched: list[list[int]],
                                                action: str, model: str | None) -> None:
        add_counters(engine, 2)
        result = jet_execute(client, action, model, ids=[1], inverseIds=True)
        assert result.status_code == 400
        assert "bulk record action" in result.json['fields']['inverseIds'] and repr(action) in result.json['fields']['inverseIds']
        assert touched == []

    def test_excluding_every_record_is_a_400(self, client: Client, engine: sa.Engine, touched: list[list[int]]) -> None:
        add_counters(engine, 2)
        result = jet_execute(client, 'touch', ids=[1, 2], inverseIds=True)
        assert result.status_code == 400 and 'ids' in result.json['fields']
        assert touched == []

    def test_a_selection_over_max_ids_is_a_413_stating_the_count_and_runs_nothing(
        self, make_bridge: Callable[..., Bridge], engine: sa.Engine,
    ) -> None:
        bridge = make_bridge(max_ids=10)
        runs: list[int] = []

        @bridge.action(model=Counter, for_instance=True, bulk=True)
        def touch(counters: list[Counter]) -> None:
            runs.append(len(counters))

        add_counters(engine, 12)
        client = Client(bridge)
        over = jet_execute(client, 'touch', ids=[1], inverseIds=True)
        assert over.status_code == 413, over.text
        assert over.json['code'] == 'too_large' and '11 records' in over.json['detail'] and 'at most 10' in over.json['detail']
        at_limit = jet_execute(client, 'touch', ids=[1, 2], inverseIds=True)
        assert at_limit.status_code == 200 and runs == [10]

    def test_records_load_in_chunks_with_no_not_in_and_no_query_per_row(
        self, client: Client, engine: sa.Engine, touched: list[list[int]], statements: StatementLog,
    ) -> None:
        add_counters(engine, 1203)
        excluded = list(range(1, 1204, 3))  # 401 ids
        with statements:
            result = jet_execute(client, 'touch', ids=excluded, inverseIds=True)
        assert result.status_code == 200, result.text
        assert touched == [[i for i in range(1, 1204) if i not in set(excluded)]]
        selects = statements.selects()
        # count(*), the listed ids' count in one IN chunk, then ceil(1203 / 500) = 3 keyset pages.
        assert len(selects) == 5, selects
        assert not any('NOT IN' in statement.upper() for statement in statements.statements)

    def test_a_locked_select_all_runs_and_audits_what_ran(self, make_bridge: Callable[..., Bridge],
                                                          engine: sa.Engine) -> None:
        migrations.upgrade(engine)
        bridge = make_bridge(audit=True)

        @bridge.action(model=Counter, for_instance=True, bulk=True, lock=True)
        def touch(counters: list[Counter], ctx: ActionContext) -> dict[str, Any]:
            return {'ids': ctx.ids}

        add_counters(engine, 4)
        client = Client(bridge)
        result = jet_execute(client, 'touch', ids=[3], inverseIds=True)
        assert result.json == {'result': True, 'ids': [1, 2, 4], 'run': 1}  # an audited answer names its log row
        # The same key for "these ids" and "all but these ids" are different requests.
        keyed = jet_execute(client, 'touch', ids=[3], inverseIds=True, form={'idempotency_key': 'k'})
        assert keyed.status_code == 200
        clash = jet_execute(client, 'touch', ids=[3], form={'idempotency_key': 'k'})
        assert clash.status_code == 409, clash.text
        with engine.connect() as connection:
            logged = connection.execute(sa.select(action_log.c.ids).order_by(action_log.c.id)).scalars().all()
        assert [json.loads(ids) for ids in logged[:2]] == [['1', '2', '4'], ['1', '2', '4']]


class TestLabels:
    def test_label_is_also_verbose_name_and_icon_is_sent(self, bridge: Bridge, client: Client) -> None:
        @bridge.action(model=User, for_instance=True, bulk=True, label='Send mail', icon='email')
        def mail(users: list[User]) -> None: ...

        @bridge.action()
        def plain() -> None: ...

        described = {item['name']: item for item in client.message('get_action_list').json}
        assert (described['mail']['label'], described['mail']['verbose_name'], described['mail']['icon']) == (
            'Send mail', 'Send mail', 'email')
        assert not {'label', 'verbose_name', 'icon'} & set(described['plain'])

    @pytest.mark.parametrize('icon', ['', 5])
    def test_an_icon_that_is_not_a_name_is_refused_at_declaration(self, bridge: Bridge, icon: Any) -> None:
        with pytest.raises(TypeError, match='icon'):
            @bridge.action(icon=icon)
            def broken() -> None: ...


def test_read_execute_params_refuses_a_non_boolean_flag() -> None:
    with pytest.raises(InvalidParams) as refused:
        read_execute_params({'inverse_ids': 'maybe'}, {})
    assert refused.value.fields == {'inverse_ids': "expected true or false, got 'maybe'"}


def test_the_typed_decorator_offers_every_keyword_of_declare_action() -> None:
    """``Bridge.action``'s overload is what type checkers and editors see; it must not lag behind (``icon``)."""
    def keywords(function: Any) -> dict[str, Any]:
        return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
                if parameter.kind is parameter.KEYWORD_ONLY}

    with_options = [overload for overload in typing.get_overloads(Bridge.action) if keywords(overload)]
    assert len(with_options) == 1
    assert keywords(with_options[0]) == keywords(declare_action)
    assert 'icon' in keywords(declare_action)
