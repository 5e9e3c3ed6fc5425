"""The OpenAPI document at GET /api/openapi.json: valid, in step with the server, and true to its answers.

schemathesis generates requests from the document (valid and invalid ones)
and runs them against the real app in-process; every answer must be a
documented status, in the documented JSON shape, and never a 5xx.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from typing import Any

import falcon
import jsonschema
import pytest
import schemathesis
import sqlalchemy as sa
from falcon import testing
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks

from jet_sqla import Bridge, openapi
from jet_sqla.errors import JetError
from jet_sqla.messages import (
    EXECUTE_ACTION,
    GET_ACTION_LIST,
    GET_FIELD_OPTIONS,
    LIST_RECORDS,
)

from .conftest import AUTH, PROBLEM
from .test_limits import touch_clients

SCHEMATHESIS_EXAMPLES = 300


@pytest.fixture
def limited(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> Callable[..., testing.TestClient]:
    return touch_clients(make_bridge, engine)


def fetch_document(app: falcon.App, path: str = '/api/openapi.json') -> dict[str, Any]:
    result = testing.TestClient(app).simulate_get(path)  # no Authorization header: the document is public
    assert result.status_code == 200, result.text
    assert result.headers['content-type'].startswith('application/json')
    document: dict[str, Any] = json.loads(result.content)
    return document


@pytest.mark.parametrize('dialect', ['sqlite'])
@pytest.mark.parametrize('console', [False, True])
def test_the_document_is_valid_openapi_3_1_and_served_without_auth(
    limited: Callable[..., testing.TestClient], console: bool,
) -> None:
    document = fetch_document(limited(console=console).app)
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document['openapi'].startswith('3.1')
    assert set(document['paths']) == {'/api/messages/', '/api/health', '/api/openapi.json'}
    described = document['components']['schemas']['Message']['discriminator']['mapping']
    # list_records is answered only with the console on; the document says so.
    assert set(described) == ({GET_ACTION_LIST, EXECUTE_ACTION, GET_FIELD_OPTIONS, 'get_job', 'cancel_job'}
                              | ({LIST_RECORDS} if console else set()))


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_the_document_follows_the_settings(limited: Callable[..., testing.TestClient]) -> None:
    document = fetch_document(limited(prefix='/jet/v1', max_ids=500, max_body_size=4096).app, '/jet/v1/openapi.json')
    validate(document)
    assert '/jet/v1/messages/' in document['paths']
    ids = document['components']['schemas']['ExecuteAction']['properties']['params']['properties']['params']
    assert ids['properties']['ids']['oneOf'][0]['maxItems'] == 500
    assert '4096 bytes' in document['info']['description']


def test_the_document_is_built_once_per_set_of_settings() -> None:
    first = openapi.document(prefix='/api', max_body_size=1024, max_ids=10, collections=('users',))
    assert openapi.document(prefix='/api', max_body_size=1024, max_ids=10, collections=('users',)) is first
    assert openapi.document(prefix='/api', max_body_size=2048, max_ids=10, collections=('users',)) is not first


def _every_error_class(base: type[JetError] = JetError) -> list[type[JetError]]:
    found = [base]
    for subclass in base.__subclasses__():
        found.extend(_every_error_class(subclass))
    return found


def test_every_error_the_server_can_send_is_documented_in_both_dialects() -> None:
    """The status of every domain error (whoever added it) is in the document, in both content types."""
    document = openapi.build_document(listing=True)
    responses = document['paths']['/api/messages/']['post']['responses']
    statuses = {error_class.status for error_class in _every_error_class() if error_class.__module__.startswith('jet_sqla')}
    assert statuses <= {int(status) for status in responses}, statuses - {int(status) for status in responses}
    assert statuses == set(openapi.ERROR_STATUSES)
    for status in statuses:
        content = responses[str(status)]['content']
        assert set(content) == {'application/json', 'application/problem+json'}
        assert content['application/problem+json']['schema'] == {'$ref': '#/components/schemas/Problem'}
        expected = 'ValidationErrors' if status == 400 else 'Error'
        assert content['application/json']['schema'] == {'$ref': f'#/components/schemas/{expected}'}


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    # Schemas of OpenAPI 3.1 are JSON Schema 2020-12; $refs resolve against the whole document.
    return jsonschema.Draft202012Validator({**schema, 'components': document['components']})


@pytest.mark.parametrize('accept', [{}, PROBLEM], ids=['jet', 'problem'])
@pytest.mark.parametrize('dialect', ['sqlite', 'postgresql'])
def test_real_answers_match_the_documented_responses(limited: Callable[..., testing.TestClient], engine: sa.Engine,
                                                     accept: dict[str, str]) -> None:
    app = limited(console=True).app
    document = fetch_document(app)
    client = testing.TestClient(app)
    operation = document['paths']['/api/messages/']['post']
    request_schema = _validator(document, operation['requestBody']['content']['application/json']['schema'])
    cases: list[tuple[dict[str, Any], dict[str, str], int]] = [
        ({'name': GET_ACTION_LIST}, AUTH, 200),
        ({'name': EXECUTE_ACTION, 'params': {'name': 'touch', 'params': {'ids': [1, 2]}}}, AUTH, 200),
        ({'name': GET_FIELD_OPTIONS, 'params': {'model': 'accounts', 'field': 'owner_id'}}, AUTH, 200),
        ({'name': LIST_RECORDS, 'params': {'model': 'counters', 'limit': 2}}, AUTH, 200),
        ({'name': EXECUTE_ACTION, 'params': {'name': 'touch', 'params': {'ids': ['x']}}}, AUTH, 400),
        ({'name': GET_ACTION_LIST}, {}, 401),
        ({'name': EXECUTE_ACTION, 'params': {'name': 'nope'}}, AUTH, 404),
        ({'name': EXECUTE_ACTION, 'params': {'name': 'touch', 'params': {'ids': [1, 99]}}}, AUTH, 404),
        ({'name': EXECUTE_ACTION, 'params': {'name': 'touch', 'ids': [1], 'inverseIds': True, 'params': {}}}, AUTH, 200),
        ({'name': EXECUTE_ACTION, 'params': {'name': 'touch', 'ids': [1], 'params': {'ids': '2'}}}, AUTH, 400),
    ]
    for message, headers, status in cases:
        request_schema.validate(message)  # every case is a request the document allows
        result = client.simulate_post('/api/messages/', json=message, headers={**headers, **accept})
        assert result.status_code == status, (message, result.text)
        content_type = result.headers['content-type'].split(';')[0]
        assert content_type == ('application/problem+json' if accept and status >= 400 else 'application/json')
        response = operation['responses'][str(status)]['content'][content_type]['schema']
        _validator(document, response).validate(result.json)
    health = document['paths']['/api/health']['get']['responses']['200']['content']['application/json']['schema']
    _validator(document, health).validate(client.simulate_get('/api/health').json)


# --- schemathesis ------------------------------------------------------------------------

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]


def exercise(operation: Any, statuses: collections.Counter[str], headers: dict[str, str]) -> None:
    """Valid and invalid requests generated for one operation, each answer checked against the document."""

    @settings(max_examples=SCHEMATHESIS_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
           | operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def run(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        statuses[f'{operation.label} {response.status_code}'] += 1

    run()


@pytest.mark.parametrize('accept', [{}, PROBLEM], ids=['jet', 'problem'])
@pytest.mark.parametrize('dialect', ['sqlite', 'postgresql'])
def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    limited: Callable[..., testing.TestClient], dialect: str, capsys: pytest.CaptureFixture[str],
    accept: dict[str, str],
) -> None:
    """Each operation of the document, through the real app, with errors in either dialect."""
    schema = schemathesis.openapi.from_wsgi('/api/openapi.json', limited(console=True).app)
    statuses: collections.Counter[str] = collections.Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    # (schemathesis leaves out the document's own path.)
    assert {operation.label for operation in operations} >= {'POST /api/messages/', 'GET /api/health'}
    for operation in operations:
        exercise(operation, statuses, {**AUTH, **accept})
    with capsys.disabled():
        label = 'problem details' if accept else "Jet's dialect"
        print(f'\n[reliability] schemathesis on {dialect}, {label}: {sum(statuses.values())} requests, 0 failed checks; '
              f'{dict(sorted(statuses.items()))}')
    assert sum(statuses.values()) >= SCHEMATHESIS_EXAMPLES
