"""Attacks on authentication: each gets a 401 or 403 JSON, no data, and runs nothing.

Checked in-process through the real app for every message, at the
:class:`~jet_sqla.auth.Authenticator` for what an HTTP stack would strip (a
trailing newline), and over real HTTP to a gunicorn on loopback. Shared tokens
are compared in constant time: a spy on ``hmac.compare_digest`` shows it is
called once for every configured token on every request, and the source is
checked for any other comparison of a secret.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import http.client
import inspect
import json
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from falcon import testing

from jet_sqla import Bridge, auth
from jet_sqla.auth import Authenticator
from jet_sqla.errors import Forbidden, Unauthorized

from . import apps
from .conftest import AUTH, TOKEN
from .test_jwt import PROJECT, Keys
from .test_limits import (
    add_counters,
    declare_touch,
    raw_exchange,
    served_app,
    served_touches,
    touch_body,
    touched,
)

JET = Keys()
#: Another Jet Admin account's key: its tokens are well formed and correctly signed, just not by ours.
OTHER = Keys()
JET_KEY, JET_PUBLIC_PEM, OTHER_KEY = JET.private, JET.public_pem, OTHER.private


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def claims(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {'user': 7, 'exp': int(time.time()) + 600, 'projects': {PROJECT: {'owner': True}}}
    value.update(overrides)
    return value


def signed(payload: dict[str, Any], key: Any = None, algorithm: str = 'RS256', headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(payload, key if key is not None else JET_KEY, algorithm=algorithm, headers=headers)


def unsigned(payload: dict[str, Any], alg: str) -> str:
    """A token whose header says ``alg`` and whose signature is empty."""
    header = b64(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())
    return f'{header}.{b64(json.dumps(payload).encode())}.'


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC-signed with the public key, which the server knows, as the secret."""
    signing_input = f'{b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())}.{b64(json.dumps(payload).encode())}'
    signature = hmac.new(JET_PUBLIC_PEM.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f'{signing_input}.{b64(signature)}'


def embedded_jwk(payload: dict[str, Any]) -> str:
    """Signed by the attacker, who puts their own public key in the header for the server to trust."""
    public = OTHER_KEY.public_key().public_numbers()
    jwk = {'kty': 'RSA', 'n': b64(public.n.to_bytes(256, 'big')), 'e': b64(public.e.to_bytes(3, 'big'))}
    return signed(payload, OTHER_KEY, headers={'jwk': jwk, 'kid': 'attacker'})


def edited(token: str, payload: dict[str, Any]) -> str:
    """``token`` with its payload replaced and its signature kept."""
    header, _, signature = token.split('.')
    return f'{header}.{b64(json.dumps(payload).encode())}.{signature}'


#: Every attack, as the Authorization header it sends (``None``: no header), and the status it must get.
ATTACKS: dict[str, tuple[str | None, int]] = {
    'no header': (None, 401),
    'empty header': ('', 401),
    'wrong scheme: Basic': ('Basic ' + base64.b64encode(f'user:{TOKEN}'.encode()).decode(), 401),
    'wrong scheme: Digest': (f'Digest {TOKEN}', 401),
    'no scheme': (TOKEN, 401),
    'scheme only': ('Bearer', 401),
    'token that is a prefix of ours': (f'Bearer {TOKEN[:-1]}', 401),
    'our token as a prefix of it': (f'Bearer {TOKEN}x', 401),
    'our token and more words': (f'Bearer {TOKEN} {TOKEN}', 401),
    'token of another case': (f'Bearer {TOKEN.upper()}', 401),
    'two headers joined': (f'Bearer wrong,Bearer {TOKEN}', 401),
    'shared token in the JWT scheme': (f'JWT {TOKEN}', 401),
    'valid JWT in the Bearer scheme': (f'Bearer {signed(claims())}', 401),
    'JWT alg=none': ('JWT ' + unsigned(claims(), 'none'), 401),
    'JWT alg=None': ('JWT ' + unsigned(claims(), 'None'), 401),
    'JWT HS256 signed with the public key': ('JWT ' + hs256_with_public_key(claims()), 401),
    'JWT RS512 from our key': ('JWT ' + signed(claims(), algorithm='RS512'), 401),
    'JWT with an embedded attacker key': ('JWT ' + embedded_jwk(claims()), 401),
    'JWT expired': ('JWT ' + signed(claims(exp=int(time.time()) - 60)), 401),
    'JWT without exp': ('JWT ' + signed({'user': 7, 'projects': {PROJECT: {'owner': True}}}), 401),
    'JWT of another Jet account': ('JWT ' + signed(claims(), OTHER_KEY), 401),
    'JWT with its payload edited': ('JWT ' + edited(signed(claims()), claims(user=1)), 401),
    "JWT of another project": ('JWT ' + signed(claims(projects={'other': {'owner': True}})), 403),
    'JWT with no projects': ('JWT ' + signed(claims(projects=None)), 403),
    'JWT with projects as a list': ('JWT ' + signed(claims(projects=[PROJECT])), 403),
}

MESSAGES: list[tuple[str, dict[str, Any]]] = [
    ('execute_action', {'name': 'touch', 'params': {'ids': [1, 2]}}),
    ('get_action_list', {}),
    ('get_field_options', {'model': 'accounts', 'field': 'owner_id'}),
]


@pytest.fixture
def guarded(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> testing.TestClient:
    """Shared token and JWT both configured; ``touch`` declared over 3 counters."""
    add_counters(engine, 3)
    bridge = make_bridge(token=TOKEN, jwt_public_key=JET_PUBLIC_PEM, project=PROJECT)
    declare_touch(bridge)
    return testing.TestClient(bridge.wsgi_app())


def assert_refused(status: int, content_type: str, body: bytes, expected: int) -> None:
    assert status == expected, body[:300]
    assert content_type.startswith('application/json')  # Jet's dialect
    decoded = json.loads(body)
    assert set(decoded) == {'detail', 'error', 'error_code'}, decoded  # no data, only the reason
    assert decoded['error_code'] == {401: 'unauthorized', 403: 'forbidden'}[expected]
    assert TOKEN not in body.decode() and 'touch' not in body.decode()


@pytest.mark.parametrize('dialect', ['sqlite'])
@pytest.mark.parametrize('attack', sorted(ATTACKS))
def test_every_attack_is_refused_for_every_message_and_runs_nothing(
    guarded: testing.TestClient, engine: sa.Engine, attack: str,
) -> None:
    header, expected = ATTACKS[attack]
    headers = {} if header is None else {'Authorization': header}
    for name, params in MESSAGES:
        result = guarded.simulate_post('/api/messages/', json={'name': name, 'params': params}, headers=headers)
        assert_refused(result.status_code, result.headers.get('content-type', ''), result.content, expected)
        if expected == 401:
            assert 'Bearer' in result.headers['www-authenticate']
    assert touched(engine) == 0


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_the_same_requests_with_valid_credentials_succeed(guarded: testing.TestClient, engine: sa.Engine) -> None:
    """So that a refusal above is the credential's doing, not the request's."""
    for header in (AUTH['Authorization'], f'Token {TOKEN}', f'JWT {signed(claims())}'):
        for name, params in MESSAGES:
            result = guarded.simulate_post('/api/messages/', json={'name': name, 'params': params},
                                           headers={'Authorization': header})
            assert result.status_code == 200, (header[:20], name, result.text)
    assert touched(engine) == 2 * 3


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_a_read_only_user_may_read_but_not_execute(guarded: testing.TestClient, engine: sa.Engine) -> None:
    read_only = {'Authorization': 'JWT ' + signed(claims(projects={PROJECT: {'read_only': True}}))}
    result = guarded.simulate_post('/api/messages/', json={'name': 'execute_action', 'params': MESSAGES[0][1]},
                                   headers=read_only)
    assert_refused(result.status_code, result.headers['content-type'], result.content, 403)
    assert 'Read-only' in result.json['detail']
    assert touched(engine) == 0
    listed = guarded.simulate_post('/api/messages/', json={'name': 'get_action_list'}, headers=read_only)
    assert listed.status_code == 200 and [action['name'] for action in listed.json] == ['touch']


@pytest.mark.parametrize('dialect', ['sqlite'])
@pytest.mark.parametrize('suffix', ['\n', '\r\n', '\r', '\x00', '\t', ' '])
def test_a_token_with_a_trailing_control_character_reaches_the_app_and_is_refused(
    guarded: testing.TestClient, engine: sa.Engine, suffix: str,
) -> None:
    """falcon.testing strips header values, as HTTP servers do; this environ carries the raw value to the app."""
    environ = testing.create_environ('/api/messages/', method='POST', body=touch_body([1]))
    environ['HTTP_AUTHORIZATION'] = f'Bearer {TOKEN}{suffix}'
    start_response = testing.StartResponseMock()
    body = b''.join(guarded.app(environ, start_response))
    assert start_response.status is not None
    assert_refused(int(start_response.status[:3]), dict(start_response.headers)['content-type'], body, 401)
    assert touched(engine) == 0


@pytest.mark.parametrize('credential', [f'{TOKEN}\n', f'{TOKEN}\r\n', f'\n{TOKEN}', f'{TOKEN}\x00', f' {TOKEN}',
                                        TOKEN[:-1], f'{TOKEN}x', TOKEN.upper(), f'{TOKEN}é', '\ud800', 'é' * 10_000])
def test_the_authenticator_refuses_anything_but_the_exact_token(credential: str) -> None:
    authenticator = Authenticator([TOKEN, 'another-token'])
    for scheme in ('Bearer', 'Token'):
        with pytest.raises(Unauthorized) as refused:
            authenticator.authenticate(f'{scheme} {credential}')
        assert TOKEN not in refused.value.message
    assert authenticator.authenticate(f'Bearer {TOKEN}').actor is None  # and the exact one passes


def test_the_authenticator_refuses_jwt_attacks_and_names_no_secret() -> None:
    authenticator = Authenticator(jwt_public_key=JET_PUBLIC_PEM, project=PROJECT)
    for header, expected in ATTACKS.values():
        error = Unauthorized if expected == 401 else Forbidden
        with pytest.raises(error):
            authenticator.authenticate(header)
    identity = authenticator.authenticate('JWT ' + signed(claims(projects={PROJECT: {'read_only': True}})))
    assert identity.read_only and identity.actor is not None and identity.actor['user'] == 7


# --- constant time -------------------------------------------------------------------------

class CompareSpy:
    """Wraps ``hmac.compare_digest``: records every call, then compares for real."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self.real = hmac.compare_digest

    def __call__(self, given: Any, expected: Any) -> bool:
        self.calls.append((given, expected))
        return self.real(given, expected)


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[CompareSpy]:
    spy = CompareSpy()
    monkeypatch.setattr(hmac, 'compare_digest', spy)
    yield spy


TOKENS = ['first-token', 'second-token', 'third-token']


@pytest.mark.parametrize('credential', ['first-token', 'third-token', 'wrong', 'first', 'third-token-and-more', 'ü'])
def test_every_configured_token_is_compared_with_compare_digest_whatever_the_credential(
    compare_spy: CompareSpy, credential: str,
) -> None:
    authenticator = Authenticator(TOKENS)
    try:
        authenticator.authenticate(f'Bearer {credential}')
    except Unauthorized:
        pass
    given = credential.encode()
    # One call per configured token, none skipped after a match, and only through compare_digest.
    assert compare_spy.calls == [(given, token.encode()) for token in TOKENS]


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_requests_through_the_app_compare_with_compare_digest(
    make_bridge: Callable[..., Bridge], compare_spy: CompareSpy,
) -> None:
    client = testing.TestClient(make_bridge(token=TOKENS).wsgi_app())
    for credential, status in (('second-token', 200), ('second-tokem', 401)):
        compare_spy.calls.clear()
        result = client.simulate_post('/api/messages/', json={'name': 'get_action_list'},
                                      headers={'Authorization': f'Token {credential}'})
        assert result.status_code == status
        assert [expected for _, expected in compare_spy.calls] == [token.encode() for token in TOKENS]


def _function_tree(function: Callable[..., Any]) -> ast.FunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | \
        {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


SECRET_NAMES = {'credential', 'given', 'token', '_tokens'}


def test_no_secret_is_compared_other_than_with_compare_digest() -> None:
    """Structural: in the code that sees a credential, secrets meet only in hmac.compare_digest."""
    matcher = _function_tree(Authenticator._matches_token)
    calls = [node for node in ast.walk(matcher) if isinstance(node, ast.Call)]
    assert any(ast.unparse(call.func) == 'hmac.compare_digest' for call in calls)
    loops = [node for node in ast.walk(matcher) if isinstance(node, ast.For)]
    assert loops and ast.unparse(loops[0].iter) == 'self._tokens'
    # No early exit: a match must not make the loop, and so the request, shorter.
    assert not [node for node in ast.walk(loops[0]) if isinstance(node, (ast.Break, ast.Return, ast.If))]
    for function in (Authenticator._matches_token, Authenticator.authenticate):
        tree = _function_tree(function)
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                assert not _names(node) & SECRET_NAMES, f'{function.__name__}: {ast.unparse(node)}'
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in {'startswith', 'endswith', 'find', 'index', '__eq__'} or \
                    not _names(node) & SECRET_NAMES, f'{function.__name__}: {ast.unparse(node)}'
    assert 'compare_digest' in inspect.getsource(auth)


# --- over real HTTP -------------------------------------------------------------------------

@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[apps.Gunicorn]:
    with served_app(tmp_path_factory.mktemp('auth'), JET_SQLA_JWT_PUBLIC_KEY=JET_PUBLIC_PEM,
                    JET_SQLA_PROJECT=PROJECT) as served:
        yield served


OVER_HTTP = ['no header', 'empty header', 'wrong scheme: Basic', 'token that is a prefix of ours',
             'our token as a prefix of it', 'JWT alg=none', 'JWT HS256 signed with the public key', 'JWT expired',
             'JWT of another Jet account', 'JWT of another project']


@pytest.mark.e2e
def test_attacks_over_http_get_401_or_403_json_and_run_nothing(server: apps.Gunicorn) -> None:
    before = served_touches(server)
    for attack in OVER_HTTP:
        header, expected = ATTACKS[attack]
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            headers = {'Content-Type': 'application/json'}
            if header is not None:
                headers['Authorization'] = header
            connection.request('POST', '/api/messages/', body=touch_body([1, 2]), headers=headers)
            response = connection.getresponse()
            assert_refused(response.status, response.getheader('Content-Type', ''), response.read(), expected)
        finally:
            connection.close()
    read_only = 'JWT ' + signed(claims(projects={PROJECT: {'read_only': True}}))
    status, head, body = raw_exchange(server, _post(read_only.encode()))
    assert_refused(status, _content_type(head), body, 403)
    assert served_touches(server) == before
    # The server is working: the real token runs the action.
    status, _, body = raw_exchange(server, _post(AUTH['Authorization'].encode()))
    assert (status, json.loads(body)) == (200, {'result': True, 'count': 2})


def _post(authorization: bytes) -> bytes:
    body = touch_body([1, 2])
    return (b'POST /api/messages/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n'
            b'Content-Length: %d\r\nAuthorization: %s\r\n\r\n%s' % (len(body), authorization, body))


def _content_type(head: bytes) -> str:
    for line in head.split(b'\r\n'):
        name, _, value = line.partition(b':')
        if name.strip().lower() == b'content-type':
            return value.strip().decode()
    return ''


@pytest.mark.e2e
@pytest.mark.parametrize('raw', [b'Bearer test-token\n', b'Bearer test-token\r\n ', b'Bearer test-token\x00',
                                 b'Bearer test-token\rX'])
def test_control_characters_in_the_header_never_reach_the_app_over_http(server: apps.Gunicorn, raw: bytes) -> None:
    """gunicorn refuses such a header itself (400, its own page): no data, and the action does not run."""
    before = served_touches(server)
    status, _, body = raw_exchange(server, _post(raw))
    assert status == 400
    assert b'count' not in body and b'result' not in body
    assert served_touches(server) == before


@pytest.mark.e2e
def test_duplicate_authorization_headers_over_http_are_401_json(server: apps.Gunicorn) -> None:
    before = served_touches(server)
    status, head, body = raw_exchange(server, _post(b'Bearer wrong\r\nAuthorization: ' + AUTH['Authorization'].encode()))
    assert_refused(status, _content_type(head), body, 401)
    assert served_touches(server) == before
