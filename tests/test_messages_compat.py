"""Handler-style code written for the reference bridge, running next to decorator-declared actions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import ActionError, Bridge, messages

from .conftest import Client
from .models import Tier, User

Flavour = Callable[[Callable[[str | None, Any], Any]], Callable[..., Any]]


@pytest.fixture(autouse=True)
def no_process_handlers() -> Iterator[None]:
    """Module-level registrations are process-wide: start and leave every test without any."""
    messages.default_handlers.clear()
    yield
    messages.default_handlers.clear()


def with_name(body: Callable[[str | None, Any], Any]) -> Callable[..., Any]:
    def handler(message_name: str, message_params: Any) -> Any:
        return body(message_name, message_params)

    return handler


def params_only(body: Callable[[str | None, Any], Any]) -> Callable[..., Any]:
    def handler(message_params: Any) -> Any:
        return body(None, message_params)

    return handler


FLAVOURS = pytest.mark.parametrize('flavour', [with_name, params_only], ids=['(name, params)', '(params)'])


def add_users(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=f'user {i}') for i in range(1, count + 1))


def test_the_jet_docs_handler_example(bridge: Bridge, client: Client, engine: sa.Engine) -> None:
    """Code in the shape of the Jet docs' ``jet_messages.py``; only its import line differs.

    The Jet docs are not reachable from here, so this follows their example as
    PROTOCOL.md records it: the same three handlers, the ``(message_name,
    message_params)`` signature, the same entries, and the same ``add_handler``
    calls. Collection names are jet_sqla's (``users``), not Django's ``users;user``.
    """
    add_users(engine, 3)
    outbox: list[Any] = []

    # --- as in the docs, but for this import line (was: from jet_bridge_base import messages) ---
    from jet_sqla import messages

    # define handler which will return all possible actions
    def get_action_list(message_name, message_params):  # type: ignore[no-untyped-def]
        return [
            {
                'name': 'mail_users',
                'model_action': {  # applied to the selected users
                    'model': 'users',
                    'for_instance': True,
                    'bulk': True,  # one request with all the ids, instead of one request per row
                },
            },
            {
                'name': 'refresh_users_status',
                'model_action': {  # applied to all users
                    'model': 'users',
                },
            },
            {
                'name': 'rebuild_index',
                'common_action': {},  # not connected to any collection
            },
        ]

    # define handler which will process all possible actions
    def execute_action(message_name, message_params):  # type: ignore[no-untyped-def]
        if message_params['name'] == 'mail_users':
            # your custom action processing here
            ids = message_params.get('params', {}).get('ids')
            outbox.append(ids)
            return {
                'result': True,
            }

    def get_field_options(message_name, message_params):  # type: ignore[no-untyped-def]
        if message_params.get('model') == 'orders' and message_params.get('field') == 'city':
            result = [
                {'value': 'london', 'name': 'London', 'color': 'blue'},
                {'value': 'new_york', 'name': 'New York', 'color': 'green'},
            ]
            if message_params.get('form', {}).get('country') == 'italy':
                result.append({'value': 'rome', 'name': 'Rome', 'color': 'red'})
            return result

    # add defined handlers
    messages.add_handler(messages.GET_ACTION_LIST, get_action_list)
    messages.add_handler(messages.EXECUTE_ACTION, execute_action)
    messages.add_handler(messages.GET_FIELD_OPTIONS, get_field_options)
    # --- end of the docs' code ---

    listed = client.message('get_action_list')
    assert listed.status_code == 200
    assert listed.json == get_action_list(None, None)

    mailed = client.message('execute_action', {'name': 'mail_users', 'model': 'users', 'params': {'ids': '1,3'}})
    assert (mailed.status_code, mailed.json) == (200, {'result': True})
    assert outbox == ['1,3']
    refreshed = client.message('execute_action', {'name': 'refresh_users_status', 'model': 'users'})
    assert (refreshed.status_code, refreshed.json) == (200, {'result': True})
    assert outbox == ['1,3']

    cities = client.message('get_field_options', {'model': 'orders', 'field': 'city', 'form': {'country': 'italy'}})
    assert cities.status_code == 200
    assert [option['value'] for option in cities.json] == ['london', 'new_york', 'rome']
    other = client.message('get_field_options', {'model': 'orders', 'field': 'city'})
    assert [option['value'] for option in other.json] == ['london', 'new_york']
    unanswered = client.message('get_field_options', {'model': 'orders', 'field': 'street'})
    assert (unanswered.status_code, unanswered.json) == (200, [])

    # Declared actions are listed first; the handler's follow.
    @bridge.action(model=User, for_instance=True)
    def promote(user: User) -> None:
        user.tier = Tier.GOLD

    names = [item['name'] for item in client.message('get_action_list').json]
    assert names == ['promote', 'mail_users', 'refresh_users_status', 'rebuild_index']
    assert client.execute('promote', 'users', id=2).status_code == 200
    with Session(engine) as session:
        assert session.get(User, 2).tier is Tier.GOLD  # type: ignore[union-attr]
    assert outbox == ['1,3']  # the declared action did not reach the handler


def test_module_names() -> None:
    assert (messages.GET_ACTION_LIST, messages.EXECUTE_ACTION, messages.GET_FIELD_OPTIONS,
            messages.GET_ELEMENT_STATUS) == ('get_action_list', 'execute_action', 'get_field_options',
                                             'get_element_status')
    assert messages.get_handler(messages.GET_ACTION_LIST) is None
    messages.add_handler(messages.GET_ACTION_LIST, lambda params: ['listed'])
    handler = messages.get_handler(messages.GET_ACTION_LIST)
    assert handler is not None and handler('get_action_list', {}) == ['listed']


class TestSideBySide:
    @FLAVOURS
    def test_listed_next_to_declared_actions(self, bridge: Bridge, client: Client, flavour: Flavour) -> None:
        calls: list[tuple[str | None, Any]] = []

        def listing(name: str | None, params: Any) -> list[dict[str, Any]]:
            calls.append((name, params))
            return [{'name': 'legacy', 'common_action': {}}, {'name': 'declared', 'common_action': {}, 'from': 'handler'}]

        messages.add_handler(messages.GET_ACTION_LIST, flavour(listing))

        @bridge.action()
        def declared(count: int) -> None: ...

        result = client.message('get_action_list', {'hint': 1})
        assert result.status_code == 200
        assert result.json == [
            {'name': 'declared', 'common_action': {},
             'params': [{'name': 'count', 'field': 'IntegerField', 'required': True, 'params': {}}]},
            {'name': 'legacy', 'common_action': {}},  # a handler entry named like a declared action is dropped
        ]
        expected_name = 'get_action_list' if flavour is with_name else None
        assert calls == [(expected_name, {'hint': 1})]

    @FLAVOURS
    def test_execute_goes_to_the_handler_only_for_undeclared_names(
        self, bridge: Bridge, client: Client, engine: sa.Engine, flavour: Flavour
    ) -> None:
        add_users(engine, 2)
        calls: list[tuple[str | None, Any]] = []
        ran: list[list[int]] = []

        def execute(name: str | None, params: Any) -> Any:
            calls.append((name, params))
            return {'result': True, 'handled': params['name']}

        messages.add_handler(messages.EXECUTE_ACTION, flavour(execute))

        @bridge.action(model=User, for_instance=True, bulk=True)
        def declared(users: list[User], amount: int) -> None:
            ran.append([user.id for user in users])

        sent = {'name': 'legacy', 'model': 'users',
                'params': {'ids': '2,1', 'amount': '12.30', 'when': '2024-05-01', 'extra': {'nested': [1, None]}}}
        result = client.message('execute_action', sent)
        assert (result.status_code, result.json) == (200, {'result': True, 'handled': 'legacy'})
        expected_name = 'execute_action' if flavour is with_name else None
        assert calls == [(expected_name, sent)]  # exactly as sent: nothing coerced, nothing added

        declared_result = client.execute('declared', 'users', ids='2,1', amount='3')
        assert declared_result.status_code == 200
        assert ran == [[2, 1]] and len(calls) == 1

    @FLAVOURS
    def test_field_options_nobody_answers_go_to_the_handler(self, bridge: Bridge, client: Client,
                                                            flavour: Flavour) -> None:
        calls: list[Any] = []

        def field_options(name: str | None, params: Any) -> list[dict[str, Any]]:
            calls.append(params)
            return [{'value': 'from-handler', 'name': 'From handler', 'color': 'red'}]

        messages.add_handler(messages.GET_FIELD_OPTIONS, flavour(field_options))

        @bridge.action()
        def declared(note: str, tier: Tier) -> None: ...

        unanswered = [
            {'model': 'orders', 'field': 'city', 'form': {'country': 'italy'}},  # no such collection
            {'model': 'users', 'field': 'name'},  # a column with no derived options
            {'model': 'users', 'field': 'nickname'},  # no such column
            {'action': 'declared', 'field': 'note'},  # an action field with no options
            {'action': 'declared', 'field': 'other'},  # no such field
            {'action': 'legacy', 'field': 'city'},  # a handler-style action
        ]
        for params in unanswered:
            result = client.message('get_field_options', params)
            assert result.status_code == 200, (params, result.text)
            assert result.json == [{'value': 'from-handler', 'name': 'From handler', 'color': 'red'}]
        assert calls == unanswered

        answered = [{'model': 'users', 'field': 'tier'}, {'action': 'declared', 'field': 'tier'}]
        for params in answered:
            result = client.message('get_field_options', params)
            assert result.status_code == 200
            assert [option['name'] for option in result.json] == ['Bronze', 'Gold']
        assert calls == unanswered

    def test_get_element_status_goes_to_the_handler(self, client: Client) -> None:
        before = client.message('get_element_status', {'element': 'x'})
        assert before.status_code == 400
        assert before.json['code'] == 'unknown_message' and "'get_element_status'" in before.json['detail']

        messages.add_handler(messages.GET_ELEMENT_STATUS, lambda params: {'status': 'ok', 'of': params['element']})
        result = client.message('get_element_status', {'element': 'x'})
        assert (result.status_code, result.json) == (200, {'status': 'ok', 'of': 'x'})

    def test_handler_results_and_failures(self, client: Client, caplog: pytest.LogCaptureFixture) -> None:
        def execute(name: str, params: Any) -> Any:
            action = params['name']
            if action == 'refuse':
                raise ActionError('Not today')
            if action == 'crash':
                raise KeyError('secret detail')
            return None

        messages.add_handler(messages.EXECUTE_ACTION, execute)
        quiet = client.message('execute_action', {'name': 'quiet'})
        assert (quiet.status_code, quiet.json) == (200, {'result': True})
        refused = client.message('execute_action', {'name': 'refuse'})
        assert refused.status_code == 400
        assert refused.json == {'type': 'about:blank', 'title': 'Bad Request', 'status': 400, 'detail': 'Not today', 'code': 'action_error'}
        crashed = client.message('execute_action', {'name': 'crash'})
        assert crashed.status_code == 500
        assert crashed.json['code'] == 'internal_error' and 'secret detail' not in crashed.text

    def test_action_list_handler_must_return_a_list(self, client: Client) -> None:
        messages.add_handler(messages.GET_ACTION_LIST, lambda params: {'name': 'not a list'})
        result = client.message('get_action_list')
        assert result.status_code == 500
        assert result.json['code'] == 'internal_error'

    def test_without_handlers_unknown_action_is_404(self, client: Client) -> None:
        result = client.message('execute_action', {'name': 'legacy'})
        assert result.status_code == 404
        assert result.json == {'type': 'about:blank', 'title': 'Not Found', 'status': 404, 'detail': "Unknown action 'legacy'", 'code': 'not_found'}

    def test_method_and_varargs_handlers(self, client: Client) -> None:
        class Legacy:
            def get_action_list(self, message_name: str, message_params: Any) -> list[dict[str, Any]]:
                return [{'name': f'from {message_name}', 'common_action': {}}]

            def execute_action(self, message_params: Any) -> dict[str, Any]:
                return {'result': True, 'params': message_params['params']}

        legacy = Legacy()
        messages.add_handler(messages.GET_ACTION_LIST, legacy.get_action_list)
        messages.add_handler(messages.EXECUTE_ACTION, legacy.execute_action)
        messages.add_handler(messages.GET_FIELD_OPTIONS, lambda *args: [{'value': args[0], 'name': 'n', 'color': 'red'}])
        assert client.message('get_action_list').json == [{'name': 'from get_action_list', 'common_action': {}}]
        assert client.message('execute_action', {'name': 'x', 'params': {'a': 1}}).json == {'result': True, 'params': {'a': 1}}
        assert client.message('get_field_options', {'model': 'orders', 'field': 'f'}).json == [
            {'value': 'get_field_options', 'name': 'n', 'color': 'red'}]


class TestScope:
    def test_module_handlers_apply_to_every_bridge_bridge_handlers_to_one(self, make_bridge: Callable[..., Bridge]) -> None:
        first, second = Client(make_bridge()), Client(make_bridge())

        def names(client: Client) -> list[str]:
            return [item['name'] for item in client.message('get_action_list').json]

        assert names(first) == names(second) == []
        messages.add_handler(messages.GET_ACTION_LIST, lambda params: [{'name': 'everywhere', 'common_action': {}}])
        assert names(first) == names(second) == ['everywhere']  # registered after the apps were built

        first.bridge.messages.add_handler(messages.GET_ACTION_LIST, lambda params: [{'name': 'first only', 'common_action': {}}])
        assert names(first) == ['first only']  # the bridge's own handler wins over the module's
        assert names(second) == ['everywhere']

        first.bridge.messages.add_handler(messages.EXECUTE_ACTION, lambda params: {'result': True, 'by': 'first'})
        assert first.message('execute_action', {'name': 'x'}).json == {'result': True, 'by': 'first'}
        assert second.message('execute_action', {'name': 'x'}).status_code == 404

        messages.default_handlers.clear()
        assert names(first) == ['first only'] and names(second) == []

    def test_bridge_handlers_do_not_leak_into_the_module(self, bridge: Bridge) -> None:
        bridge.messages.add_handler(messages.GET_FIELD_OPTIONS, lambda params: [])
        assert bridge.messages.get_handler(messages.GET_FIELD_OPTIONS) is not None
        assert messages.get_handler(messages.GET_FIELD_OPTIONS) is None
