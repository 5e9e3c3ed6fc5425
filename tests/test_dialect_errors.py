"""Error bodies in both dialects: Jet's (the default) and RFC 9457 problem details, by content negotiation.

One test renders our bodies the way jet-admin-sdk's ``server-request-error.ts``
does, and checks what the operator reads.
"""

from __future__ import annotations

from decimal import Decimal
from http import HTTPStatus
from typing import Any

import pytest
import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import Session

from jet_sqla import ActionError, Bridge
from jet_sqla.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    InternalError,
    InvalidParams,
    JetError,
    MessageError,
    NotFound,
    OutcomeUnknown,
    RecordsNotFound,
    StatementTimeout,
    TooLarge,
    Unauthorized,
)
from jet_sqla.problems import jet_body, problem_body, render, wants_problem

from .conftest import AUTH, PROBLEM, Client
from .models import Account, User


class PoolExhausted(DatabaseUnavailable):
    """A subclass added later, as anyone may: nothing but its class attributes and details."""

    status = 503
    code = 'pool_exhausted'

    def details(self) -> dict[str, Any]:
        return {'pool_size': 5}


class Teapot(JetError):
    status = 418
    code = 'teapot'


#: Every kind of error, with the Jet-dialect body it must render as.
JET_BODIES: list[tuple[JetError, dict[str, Any]]] = [
    (InvalidParams({'amount': 'expected a number', 'when': 'not a date'}, form=True),
     {'amount': ['expected a number'], 'when': ['not a date']}),
    (InvalidParams({'amount': 'expected a number'}, message='Check the amount', form=True),
     {'non_field_errors': ['Check the amount'], 'amount': ['expected a number']}),
    # The request's own params have no field in the form: general errors that name them.
    (InvalidParams({'ids': 'invalid id: x', 'model': 'say which one'}),
     {'non_field_errors': ['ids: invalid id: x', 'model: say which one']}),
    (InvalidParams({'ids': 'invalid id: x'}, message='The selection is wrong'),
     {'non_field_errors': ['The selection is wrong', 'ids: invalid id: x']}),
    (ActionError('Not today'), {'non_field_errors': ['Not today']}),
    (ActionError('More than the balance', field='amount'), {'amount': ['More than the balance']}),
    (MessageError('Unknown message', code='unknown_message'), {'non_field_errors': ['Unknown message']}),
    (NotFound("Unknown action 'x'"), {'detail': "Unknown action 'x'", 'error': "Unknown action 'x'", 'error_code': 'not_found'}),
    (RecordsNotFound('users', [4, 9]),
     {'detail': 'No users record with id 4, 9', 'error': 'No users record with id 4, 9',
      'error_code': 'records_not_found', 'collection': 'users', 'missing_ids': [4, 9]}),
    (Unauthorized('Invalid token'), {'detail': 'Invalid token', 'error': 'Invalid token', 'error_code': 'unauthorized'}),
    (Forbidden('No'), {'detail': 'No', 'error': 'No', 'error_code': 'forbidden'}),
    (Conflict('Taken'), {'detail': 'Taken', 'error': 'Taken', 'error_code': 'conflict'}),
    (TooLarge('Too big'), {'detail': 'Too big', 'error': 'Too big', 'error_code': 'too_large'}),
    (OutcomeUnknown('Maybe'), {'detail': 'Maybe', 'error': 'Maybe', 'error_code': 'outcome_unknown'}),
    (StatementTimeout('Slow'), {'detail': 'Slow', 'error': 'Slow', 'error_code': 'timeout'}),
    (InternalError('Broken'), {'detail': 'Broken', 'error': 'Broken', 'error_code': 'internal_error'}),
    (PoolExhausted('Busy'), {'detail': 'Busy', 'error': 'Busy', 'error_code': 'pool_exhausted', 'pool_size': 5}),
    (Teapot('Short and stout'), {'detail': 'Short and stout', 'error': 'Short and stout', 'error_code': 'teapot'}),
]


@pytest.mark.parametrize(('error', 'expected'), JET_BODIES, ids=[type(e).__name__ + str(i) for i, (e, _) in enumerate(JET_BODIES)])
def test_every_error_renders_in_both_dialects_from_the_error_alone(error: JetError, expected: dict[str, Any]) -> None:
    assert render(error, problem=False) == ('application/json', expected)
    content_type, problem = render(error, problem=True)
    assert content_type == 'application/problem+json'
    assert problem == {'type': 'about:blank', 'title': HTTPStatus(error.status).phrase, 'status': error.status,
                       'detail': error.message, 'code': error.code, **error.details()}


def test_a_400_never_has_anything_but_lists_of_strings_and_is_never_empty() -> None:
    for error in (InvalidParams({}), InvalidParams({}, form=True), InvalidParams({'n': 'bad'}),
                  InvalidParams({'n': 'bad'}, form=True), ActionError(''), MessageError('x')):
        body = jet_body(error)
        assert body and all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in body.values())


def test_details_never_replace_the_members_of_either_body() -> None:
    class Sneaky(JetError):
        status = 409
        code = 'sneaky'

        def details(self) -> dict[str, Any]:
            return {'detail': 'overwritten', 'error_code': 'other', 'status': 200, 'type': 'x', 'extra': 1}

    assert jet_body(Sneaky('real')) == {'detail': 'real', 'error': 'real', 'error_code': 'sneaky',
                                        'status': 200, 'type': 'x', 'extra': 1}
    assert problem_body(Sneaky('real')) == {'type': 'about:blank', 'title': 'Conflict', 'status': 409,
                                            'detail': 'real', 'code': 'sneaky', 'error_code': 'other', 'extra': 1}


@pytest.mark.parametrize(('accept', 'asked'), [
    (None, False), ('', False), ('*/*', False), ('application/json', False), ('text/html,*/*;q=0.8', False),
    ('application/problem+json', True), ('Application/Problem+JSON', True),
    ('application/json, application/problem+json', True), ('application/problem+json; q=0.1', True),
    ('application/problem+json;q=0', False), ('application/problem+json;q=0.0, */*', False),
    ('application/problem+json;q=oops', True), ('application/problem+jsonx', False),
])
def test_content_negotiation(accept: str | None, asked: bool) -> None:
    assert wants_problem(accept) is asked


# --- through the real app ----------------------------------------------------------------------

@pytest.fixture
def transfer(bridge: Bridge, engine: sa.Engine) -> Bridge:
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
        session.flush()
        session.add(Account(id=1, owner_id=1, balance=Decimal('10.00')))

    @bridge.action(model=Account, for_instance=True)
    def withdraw(account: Account, amount: Decimal, note: str = '') -> None:
        if amount > account.balance:
            raise ActionError(f'Only {account.balance} is available', field='amount')
        if note == 'refuse':
            raise ActionError('Withdrawals are closed today')
        account.balance -= amount

    return bridge


def send(bridge: Bridge, headers: dict[str, str], **form: Any) -> testing.Result:
    client = testing.TestClient(bridge.wsgi_app())
    return client.simulate_post('/api/messages/', headers={**AUTH, **headers}, json={
        'name': 'execute_action', 'params': {'name': 'withdraw', 'model': 'accounts', 'id': 1, 'params': form}})


@pytest.mark.parametrize('dialect', ['sqlite'])
class TestOverHttp:
    def test_action_error_with_a_field_in_both_dialects(self, transfer: Bridge) -> None:
        jet = send(transfer, {}, amount='25')
        assert (jet.status_code, jet.headers['content-type'], jet.json) == (
            400, 'application/json', {'amount': ['Only 10.00 is available']})
        assert 'Accept' in jet.headers['vary']
        problem = send(transfer, PROBLEM, amount='25')
        assert (problem.status_code, problem.headers['content-type']) == (400, 'application/problem+json')
        assert problem.json == {'type': 'about:blank', 'title': 'Bad Request', 'status': 400,
                                'detail': 'Only 10.00 is available', 'code': 'action_error',
                                'fields': {'amount': 'Only 10.00 is available'}}

    def test_invalid_params_and_general_errors(self, transfer: Bridge) -> None:
        assert send(transfer, {}, amount='lots').json == {'amount': ["'lots' is not a valid decimal number"]}
        assert send(transfer, {}, amount='1', note='refuse').json == {'non_field_errors': ['Withdrawals are closed today']}

    def test_other_statuses_and_framework_errors_in_both_dialects(self, transfer: Bridge) -> None:
        client = testing.TestClient(transfer.wsgi_app())
        missing = client.simulate_post('/api/messages/', headers=AUTH, json={
            'name': 'execute_action', 'params': {'name': 'withdraw', 'id': 5, 'params': {'amount': '1'}}})
        assert missing.status_code == 404
        assert missing.json == {'detail': 'No accounts record with id 5', 'error': 'No accounts record with id 5',
                                'error_code': 'records_not_found', 'collection': 'accounts', 'missing_ids': [5]}
        unauthorized = client.simulate_post('/api/messages/', json={'name': 'get_action_list'}, headers=PROBLEM)
        assert unauthorized.headers['content-type'] == 'application/problem+json'
        assert unauthorized.json['status'] == 401 and unauthorized.json['code'] == 'unauthorized'
        assert 'Bearer' in unauthorized.headers['www-authenticate']
        for headers, key in (({}, 'error_code'), (PROBLEM, 'code')):
            nowhere = client.simulate_get('/nowhere', headers=headers)
            assert nowhere.status_code == 404 and nowhere.json[key] == 'not_found'
            assert 'GET /nowhere' in nowhere.json['detail']

    def test_a_mounted_app_renders_jet_sqla_errors_in_both_dialects(self, transfer: Bridge) -> None:
        import falcon

        app = transfer.mount(falcon.App())
        client = testing.TestClient(app)
        body = {'name': 'execute_action', 'params': {'name': 'withdraw', 'id': 1, 'params': {'amount': '99'}}}
        assert client.simulate_post('/api/messages/', headers=AUTH, json=body).json == {
            'amount': ['Only 10.00 is available']}
        problem = client.simulate_post('/api/messages/', headers={**AUTH, **PROBLEM}, json=body)
        assert problem.headers['content-type'] == 'application/problem+json' and problem.json['code'] == 'action_error'


# --- as Jet Admin's client shows them ----------------------------------------------------------

class ServerRequestError:
    """What jet-admin-sdk's ``server-request-error.ts`` makes of an error response, reimplemented.

    A 400 whose body is an object: ``non_field_errors`` are general errors, and
    every other top-level key is the error of the form field of that name.
    Anything else: the body's ``detail``, or a generic "Server error".
    """

    def __init__(self, status: int, body: Any) -> None:
        self.non_field_errors: list[str] = []
        self.field_errors: dict[str, list[str]] = {}
        self.errors: list[str] = []
        if status == 400 and isinstance(body, dict):
            for key, value in body.items():
                reasons = [str(item) for item in value] if isinstance(value, list) else [str(value)]
                if key == 'non_field_errors':
                    self.non_field_errors = reasons
                else:
                    self.field_errors[key] = reasons
            self.errors = self.non_field_errors + [reason for reasons in self.field_errors.values() for reason in reasons]
        elif isinstance(body, dict) and body.get('detail'):
            self.errors = [str(body['detail'])]
        else:
            self.errors = ['Server error']

    def screen(self) -> list[str]:
        """Every line the operator reads: general errors, then each field's reasons beside the field."""
        return self.non_field_errors + [f'{name}: {reason}' for name, reasons in self.field_errors.items()
                                        for reason in reasons] if self.field_errors or self.non_field_errors else self.errors


INTERNAL_CODES = ('invalid_params', 'action_error', 'records_not_found', 'not_found', 'bad_request', 'unknown_message',
                  'Bad Request', '400')


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_jet_admins_client_shows_each_reason_next_to_its_field_and_no_internal_codes(transfer: Bridge) -> None:
    client = Client(transfer, headers={'Authorization': AUTH['Authorization'], 'Accept': 'application/json, text/plain, */*'})

    def shown(params: dict[str, Any]) -> ServerRequestError:
        result = client.message('execute_action', params)
        assert result.status_code >= 400
        rendered = ServerRequestError(result.status_code, result.json)
        for line in rendered.screen():
            assert not any(code in line for code in INTERNAL_CODES), line
        return rendered

    over = shown({'name': 'withdraw', 'model': 'accounts', 'id': 1, 'params': {'amount': '25'}})
    assert over.field_errors == {'amount': ['Only 10.00 is available']} and over.non_field_errors == []
    bad = shown({'name': 'withdraw', 'model': 'accounts', 'id': 1, 'params': {'amount': 'lots', 'note': {'x': 1}}})
    assert bad.field_errors == {'amount': ["'lots' is not a valid decimal number"],
                                'note': ['expected a string, got an object']}
    closed = shown({'name': 'withdraw', 'model': 'accounts', 'id': 1, 'params': {'amount': '1', 'note': 'refuse'}})
    assert closed.screen() == ['Withdrawals are closed today'] and closed.field_errors == {}
    # Ids that disagree are no form field's fault: a general error that names them, not a field nobody sees.
    clash = shown({'name': 'withdraw', 'model': 'accounts', 'ids': [1], 'params': {'ids': '2', 'amount': '1'}})
    assert clash.field_errors == {} and clash.non_field_errors[0].startswith('ids: the ids beside the form')
    gone = shown({'name': 'withdraw', 'model': 'accounts', 'id': 7, 'params': {'amount': '1'}})
    assert gone.screen() == ['No accounts record with id 7']
    unknown = shown({'name': 'nope'})
    assert unknown.screen() == ["Unknown action 'nope'"]
    # The old body would have shown four confusing lines; the generic fallback stays for a body without detail.
    assert ServerRequestError(500, {'title': '500'}).screen() == ['Server error']
