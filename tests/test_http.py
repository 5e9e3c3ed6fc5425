"""The HTTP layer: routes, prefixes, body parsing, limits, and JSON for every error."""

from __future__ import annotations

import json
from typing import Any

import falcon
import pytest
from falcon import testing

from jet_sqla import Bridge

from .conftest import AUTH, PROBLEM, TOKEN, Client

#: Asks for problem details, which carry the error's code even for a 400.
ASK = {**AUTH, **PROBLEM}


@pytest.fixture
def http(bridge: Bridge) -> testing.TestClient:
    @bridge.action()
    def ping() -> dict[str, str]:
        return {'pong': 'yes'}

    return testing.TestClient(bridge.wsgi_app())


def assert_json_error(result: testing.Result, status: int, code: str | None = None) -> dict[str, Any]:
    """Checks the error in whichever dialect came back; returns the body with its ``message`` added.

    Jet's dialect shows no code on a 400 (its client would print it), so ``code`` is checked there
    only on other statuses; tests that check a 400's code ask for problem details.
    """
    assert result.status_code == status, result.text
    content_type = result.headers['content-type']
    body = json.loads(result.text)
    if content_type.startswith('application/problem+json'):
        assert body['type'] == 'about:blank' and body['status'] == status and body['title']
        found_code, message = body['code'], body['detail']
    else:
        assert content_type.startswith('application/json'), content_type
        if status == 400:
            assert body['non_field_errors'] and all(isinstance(value, list) for value in body.values()), body
            found_code, message = code, ' '.join(body['non_field_errors'])
        else:
            assert body['detail'] == body['error'], body
            found_code, message = body['error_code'], body['detail']
    if code is not None:
        assert found_code == code
    return {'message': message, **body}


@pytest.mark.parametrize('path', ['/api/messages/', '/api/messages'])
def test_with_and_without_trailing_slash(http: testing.TestClient, path: str) -> None:
    result = http.simulate_post(path, json={'name': 'execute_action', 'params': {'name': 'ping'}}, headers=AUTH)
    assert result.status_code == 200
    assert result.json == {'result': True, 'pong': 'yes'}


def test_prefix_is_configurable(make_bridge: Any) -> None:
    bridge = make_bridge(prefix='/jet/v1/')
    http = testing.TestClient(bridge.wsgi_app())
    assert http.simulate_post('/jet/v1/messages/', json={'name': 'get_action_list'}, headers=AUTH).json == []
    assert_json_error(http.simulate_post('/api/messages/', json={'name': 'get_action_list'}, headers=AUTH), 404)
    assert http.simulate_get('/jet/v1/health').json == {'status': 'ok'}


def test_params_as_a_json_string_are_decoded(http: testing.TestClient) -> None:
    result = http.simulate_post('/api/messages/', headers=AUTH,
                                json={'name': 'execute_action', 'params': json.dumps({'name': 'ping'})})
    assert result.json == {'result': True, 'pong': 'yes'}


def test_params_string_that_is_not_json_is_400(http: testing.TestClient) -> None:
    result = http.simulate_post('/api/messages/', headers=ASK, json={'name': 'execute_action', 'params': '{nope'})
    assert_json_error(result, 400, 'invalid_params')


@pytest.mark.parametrize('body', [b'{bad json', b'', b'   ', b'[1, 2]', b'"text"', b'\xff\xfe', b'{"name": "x"'])
def test_malformed_body_is_400_json(http: testing.TestClient, body: bytes) -> None:
    result = http.simulate_post('/api/messages/', body=body, headers={**ASK, 'Content-Type': 'application/json'})
    assert_json_error(result, 400, 'invalid_json')
    jet = http.simulate_post('/api/messages/', body=body, headers={**AUTH, 'Content-Type': 'application/json'})
    assert list(assert_json_error(jet, 400)) == ['message', 'non_field_errors']


@pytest.mark.parametrize('message', [{}, {'params': {}}, {'name': ''}, {'name': 5}, {'name': None}])
def test_missing_name_is_400(http: testing.TestClient, message: dict[str, Any]) -> None:
    body = assert_json_error(http.simulate_post('/api/messages/', json=message, headers=ASK), 400, 'missing_name')
    assert '"name"' in body['message']


def test_unknown_message_is_400_naming_it(http: testing.TestClient) -> None:
    body = assert_json_error(
        http.simulate_post('/api/messages/', json={'name': 'get_everything'}, headers=ASK), 400, 'unknown_message')
    assert 'get_everything' in body['message']


@pytest.mark.parametrize('params', [[1], 3, True])
def test_params_of_the_wrong_type_are_400(http: testing.TestClient, params: Any) -> None:
    result = http.simulate_post('/api/messages/', json={'name': 'get_action_list', 'params': params}, headers=ASK)
    assert_json_error(result, 400, 'invalid_params')


def test_unknown_action_is_404(http: testing.TestClient) -> None:
    result = http.simulate_post('/api/messages/', json={'name': 'execute_action', 'params': {'name': 'nope'}},
                                headers=AUTH)
    body = assert_json_error(result, 404, 'not_found')
    assert 'nope' in body['message']


def test_body_over_the_limit_is_413(make_bridge: Any) -> None:
    http = testing.TestClient(make_bridge(max_body_size=100).wsgi_app())
    big = json.dumps({'name': 'get_action_list', 'params': {'pad': 'x' * 200}})
    body = assert_json_error(http.simulate_post('/api/messages/', body=big, headers=AUTH), 413, 'too_large')
    assert '100 bytes' in body['message']
    small = json.dumps({'name': 'get_action_list'})
    assert http.simulate_post('/api/messages/', body=small, headers=AUTH).status_code == 200


def test_chunked_body_over_the_limit_is_413(make_bridge: Any) -> None:
    app = make_bridge(max_body_size=100).wsgi_app()
    big = json.dumps({'name': 'get_action_list', 'params': {'pad': 'x' * 200}}).encode()
    # As gunicorn passes a chunked upload: no Content-Length, and the input marked terminated.
    chunked = {'CONTENT_LENGTH': '', 'wsgi.input_terminated': True}
    result = testing.simulate_request(app, method='POST', path='/api/messages/', headers=AUTH, body=big,
                                      extras=chunked)
    assert_json_error(result, 413, 'too_large')
    small = json.dumps({'name': 'get_action_list'}).encode()
    result = testing.simulate_request(app, method='POST', path='/api/messages/', headers=AUTH, body=small,
                                      extras=chunked)
    assert result.status_code == 200 and result.json == []


@pytest.mark.parametrize('method', ['GET', 'PUT', 'DELETE', 'PATCH'])
def test_wrong_method_is_405_json(http: testing.TestClient, method: str) -> None:
    result = http.simulate_request(method, '/api/messages/', headers=AUTH)
    assert_json_error(result, 405)
    assert 'POST' in result.headers['allow']


def test_unknown_path_is_404_json_even_when_html_is_asked_for(http: testing.TestClient) -> None:
    result = http.simulate_get('/nowhere', headers={'Accept': 'text/html'})
    assert_json_error(result, 404)
    assert '<html' not in result.text.lower()


def test_errors_are_json_even_when_xml_or_html_is_asked_for(http: testing.TestClient) -> None:
    for accept in ('text/html', 'application/xml', 'text/plain'):
        result = http.simulate_post('/api/messages/', json={'name': 'nope'}, headers={**AUTH, 'Accept': accept})
        body = assert_json_error(result, 400)
        assert "'nope'" in body['message']


def test_missing_auth_is_401_json_with_challenge(http: testing.TestClient) -> None:
    result = http.simulate_post('/api/messages/', json={'name': 'get_action_list'})
    assert_json_error(result, 401, 'unauthorized')
    assert 'Bearer' in result.headers['www-authenticate']


def test_cors_preflight_needs_no_auth(http: testing.TestClient) -> None:
    result = http.simulate_options('/api/messages/', headers={
        'Origin': 'https://app.jetadmin.io', 'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'authorization,content-type'})
    assert result.status_code == 200
    assert result.headers['access-control-allow-origin'] == '*'
    assert 'POST' in result.headers['access-control-allow-methods']


def test_mount_adds_routes_to_an_existing_app(bridge: Bridge) -> None:
    class Hello:
        def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
            resp.media = {'hello': 'world'}

    @bridge.action()
    def ping() -> None: ...

    app = falcon.App()
    app.add_route('/hello', Hello())
    bridge.mount(app)
    http = testing.TestClient(app)
    assert http.simulate_get('/hello').json == {'hello': 'world'}
    assert http.simulate_post('/api/messages/', json={'name': 'get_action_list'}, headers=AUTH).json[0]['name'] == 'ping'
    assert_json_error(http.simulate_post('/api/messages/', json={'name': 'nope'}, headers=ASK), 400, 'unknown_message')
    body = assert_json_error(http.simulate_post('/api/messages/', json={'name': 'nope'}, headers=AUTH), 400)
    assert "'nope'" in body['message']  # the mounted app renders jet_sqla's errors in Jet's dialect too


def test_handler_crash_is_500_json_and_logged(bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    def broken(name: str, params: Any) -> Any:
        raise RuntimeError('internal detail')

    bridge.messages.add_handler('get_element_status', broken)
    result = Client(bridge).message('get_element_status', {})
    body = assert_json_error(result, 500, 'internal_error')
    assert 'internal detail' not in json.dumps(body)
    assert 'internal detail' in caplog.text


def test_health_is_open_and_reports_the_database(http: testing.TestClient) -> None:
    assert http.simulate_get('/api/health').json == {'status': 'ok'}


def test_token_constant_is_what_the_client_sends() -> None:
    assert AUTH == {'Authorization': f'Bearer {TOKEN}'}
