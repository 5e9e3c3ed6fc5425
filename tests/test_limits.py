"""Limits: the most ids per request (default 100,000) and the largest body (default 1 MiB), each a clear 413.

Bodies are checked through the real app in-process, and over real HTTP to a
gunicorn on loopback for what only a real server shows: chunked uploads, and
a Content-Length that lies.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import falcon
import pytest
import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import Session

from jet_sqla import Bridge
from jet_sqla.messages import MAX_DEPTH

from . import apps
from .conftest import AUTH, PROBLEM, TOKEN, fresh_engine
from .models import Base, Counter

MIB = 1024 * 1024
DEFAULT_MAX_IDS = 100_000


def create_app() -> falcon.App:
    """The app gunicorn serves here: the test models and ``touch``, which counts its runs in the rows.

    Token, JWT key and project come from the environment (``JET_SQLA_*``), as in production.
    """
    bridge = Bridge(Base, engine=sa.create_engine(os.environ['JET_SQLA_DATABASE_URL']))
    declare_touch(bridge)
    return bridge.wsgi_app()


def declare_touch(bridge: Bridge) -> None:
    @bridge.action(model=Counter, for_instance=True, bulk=True)
    def touch(counters: list[Counter]) -> dict[str, int]:
        for counter in counters:
            counter.value += 1
        return {'count': len(counters)}


def add_counters(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(Counter(id=i, value=0) for i in range(1, count + 1))


def touched(engine: sa.Engine) -> int:
    """How many times ``touch`` changed a row, in total."""
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.coalesce(sa.func.sum(Counter.value), 0))).scalar_one())


def touch_body(ids: Any, pad: int = 0) -> bytes:
    """An execute_action of ``touch``; ``pad`` spaces make it exactly as long as a test needs."""
    body = json.dumps({'name': 'execute_action', 'params': {'name': 'touch', 'params': {'ids': ids}}}).encode()
    return body + b' ' * pad


def padded_to(size: int, ids: Any = (1,)) -> bytes:
    body = touch_body(list(ids))
    return touch_body(list(ids), size - len(body))


def assert_413(result: testing.Result, says: str) -> dict[str, Any]:
    assert result.status_code == 413, result.text[:300]
    assert result.headers['content-type'].startswith('application/json')
    body: dict[str, Any] = json.loads(result.content)
    if result.headers['content-type'].startswith('application/problem+json'):
        assert body['code'] == 'too_large' and body['status'] == 413
    else:  # Jet's dialect
        assert body['error_code'] == 'too_large' and body['error'] == body['detail']
    assert says in body['detail'], body
    return body


@contextlib.contextmanager
def served_app(tmp_path: Path, worker_class: str = 'gthread', **env: str) -> Iterator[apps.Gunicorn]:
    """:func:`create_app` under a real gunicorn (1 worker, 2 threads) over a fresh SQLite file with 3 counters."""
    url = f'sqlite:///{tmp_path / "served.db"}'
    engine = fresh_engine(url)
    add_counters(engine, 3)
    engine.dispose()
    with apps.gunicorn('tests.test_limits:create_app()', database_url=url, token=TOKEN,
                       log_path=tmp_path / 'gunicorn.log', workers=1, threads=2, env=env,
                       worker_class=worker_class) as server:
        yield server


# --- in-process: the app itself --------------------------------------------------------

def touch_clients(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> Callable[..., testing.TestClient]:
    """Adds 3 counters; returns a maker of clients of apps with ``touch`` declared, its keywords going to Bridge."""
    add_counters(engine, 3)

    def make(**kwargs: Any) -> testing.TestClient:
        bridge = make_bridge(**kwargs)
        declare_touch(bridge)
        return testing.TestClient(bridge.wsgi_app())

    return make


@pytest.fixture
def limited(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> Callable[..., testing.TestClient]:
    return touch_clients(make_bridge, engine)


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_default_body_limit_is_one_mib(limited: Callable[..., testing.TestClient], engine: sa.Engine) -> None:
    client = limited()
    at_limit = client.simulate_post('/api/messages/', body=padded_to(MIB), headers=AUTH)
    assert at_limit.status_code == 200, at_limit.text
    assert touched(engine) == 1
    over = client.simulate_post('/api/messages/', body=padded_to(MIB + 1), headers=AUTH)
    assert_413(over, f'limit of {MIB} bytes')
    assert touched(engine) == 1  # refused before it ran


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(
    limited: Callable[..., testing.TestClient], engine: sa.Engine,
) -> None:
    client = limited()
    # The body is small, but a client that announces 1 GB is answered at once.
    result = client.simulate_post('/api/messages/', body=touch_body([1]), headers={**AUTH, 'Content-Length': str(10**9)})
    assert_413(result, f'limit of {MIB} bytes')
    assert touched(engine) == 0


@pytest.mark.parametrize('dialect', ['sqlite'])
@pytest.mark.parametrize('declared', ['zero', 'one', 'cut', 'over'])
def test_a_content_length_that_lies_about_a_small_body_is_400_and_runs_nothing(
    limited: Callable[..., testing.TestClient], engine: sa.Engine, declared: str,
) -> None:
    """Shorter: the body is cut, and is not JSON. Longer: the body ends early, and is refused even though it parses."""
    client = limited()
    body = touch_body([1])
    length = {'zero': 0, 'one': 1, 'cut': len(body) - 5, 'over': len(body) + 100}[declared]
    result = client.simulate_post('/api/messages/', body=body,
                                  headers={**AUTH, **PROBLEM, 'Content-Length': str(length)})
    assert result.status_code == 400, result.text
    assert result.json['code'] == ('incomplete_body' if declared == 'over' else 'invalid_json')
    assert touched(engine) == 0


@pytest.mark.parametrize('dialect', ['sqlite'])
@pytest.mark.parametrize('value', ['abc', '-1', '1e3', '0x10', ' '])
def test_a_content_length_that_is_not_a_number_is_400_json(
    limited: Callable[..., testing.TestClient], engine: sa.Engine, value: str,
) -> None:
    app = limited().app
    environ = testing.create_environ('/api/messages/', method='POST', body=touch_body([1]),
                                     headers={**AUTH, **PROBLEM})
    environ['CONTENT_LENGTH'] = value  # past what falcon.testing's WSGI validator would let through
    start_response = testing.StartResponseMock()
    body = b''.join(app(environ, start_response))
    assert start_response.status.startswith('400'), body
    assert dict(start_response.headers)['content-type'].startswith('application/problem+json')
    decoded = json.loads(body)
    assert decoded['code'] == 'bad_request' and 'Content-Length' in decoded['detail']
    assert touched(engine) == 0


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_a_million_ids_is_413_naming_the_limit(limited: Callable[..., testing.TestClient], engine: sa.Engine) -> None:
    million = list(range(1, 10**6 + 1))
    # Under the default body limit, a million ids cannot even be sent.
    assert_413(limited().simulate_post('/api/messages/', body=touch_body(million), headers=AUTH), 'bytes')
    # With room for the body, the ids limit answers, as a list and as a comma-separated string.
    roomy = limited(max_body_size=32 * MIB)
    for ids in (million, ','.join(map(str, million))):
        result = roomy.simulate_post('/api/messages/', body=touch_body(ids), headers=AUTH)
        assert_413(result, f'At most {DEFAULT_MAX_IDS} ids per request')
    assert touched(engine) == 0


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_the_default_ids_limit_is_100_000(limited: Callable[..., testing.TestClient], engine: sa.Engine) -> None:
    client = limited(max_body_size=4 * MIB)
    over = client.simulate_post('/api/messages/', body=touch_body(list(range(1, DEFAULT_MAX_IDS + 2))), headers=AUTH)
    assert_413(over, f'got {DEFAULT_MAX_IDS + 1}')
    over_as_text = ','.join(map(str, range(1, DEFAULT_MAX_IDS + 2)))
    assert_413(client.simulate_post('/api/messages/', body=touch_body(over_as_text), headers=AUTH),
               f'At most {DEFAULT_MAX_IDS} ids')
    # Exactly at the limit the request is served: three of the ids exist, the others are listed as missing.
    at_limit = client.simulate_post('/api/messages/', body=touch_body(list(range(1, DEFAULT_MAX_IDS + 1))),
                                    headers=AUTH)
    assert at_limit.status_code == 404, at_limit.text[:300]
    assert at_limit.json['error_code'] == 'records_not_found'
    assert len(at_limit.json['missing_ids']) == DEFAULT_MAX_IDS - 3
    assert touched(engine) == 0


@pytest.mark.parametrize('dialect', ['sqlite', 'postgresql'])
def test_a_lower_ids_limit_runs_up_to_it_and_refuses_past_it(
    limited: Callable[..., testing.TestClient], engine: sa.Engine,
) -> None:
    add_counters_from(engine, 4, 1000)
    client = limited(max_ids=1000)
    ran = client.simulate_post('/api/messages/', body=touch_body(list(range(1, 1001))), headers=AUTH)
    assert ran.status_code == 200, ran.text[:300]
    assert ran.json == {'result': True, 'count': 1000}
    refused = client.simulate_post('/api/messages/', body=touch_body(list(range(1, 1002))), headers=AUTH)
    assert_413(refused, 'At most 1000 ids per request, got 1001')
    assert touched(engine) == 1000


def nested(depth: int) -> dict[str, Any]:
    """An object ``depth`` levels deep, counting itself."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {'a': value}
    return value


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_params_may_nest_64_levels_and_no_deeper(limited: Callable[..., testing.TestClient]) -> None:
    """Deeper bodies are hostile: past about 250 levels, encoders (the audit log's, drivers') would fail as 500s."""
    client = limited()
    for as_text in (False, True):
        for depth, status in ((MAX_DEPTH, 200), (MAX_DEPTH + 1, 400), (900, 400)):
            params: Any = json.dumps(nested(depth)) if as_text else nested(depth)
            result = client.simulate_post('/api/messages/', json={'name': 'get_action_list', 'params': params},
                                          headers={**AUTH, **PROBLEM})
            assert result.status_code == status, (depth, result.text[:200])
            if status == 400:
                assert result.json['code'] == 'too_deep'
                assert f'deeper than {MAX_DEPTH} levels' in result.json['detail']


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_an_action_form_may_nest_to_the_same_depth_as_a_string_or_an_object(
    limited: Callable[..., testing.TestClient], engine: sa.Engine,
) -> None:
    """The form inside execute_action's params: as an object it counts within the params' 64 levels; sent as a
    JSON string it is decoded apart and gets 64 of its own. Either way a deeper one is refused and nothing runs."""
    client = limited()

    def touch(form: Any) -> testing.Result:
        return client.simulate_post('/api/messages/', headers={**AUTH, **PROBLEM}, json={
            'name': 'execute_action', 'params': {'name': 'touch', 'params': form}})

    def form_of(depth: int) -> dict[str, Any]:
        """A form that selects counter 1, nesting ``depth`` levels counting itself."""
        return {'ids': [1], 'note': nested(depth - 1)} if depth > 1 else {'ids': [1]}

    # As an object: params (1) > form (2) > ...: the form may nest MAX_DEPTH - 1 levels.
    assert touch(form_of(MAX_DEPTH - 1)).status_code == 200
    too_deep = touch(form_of(MAX_DEPTH))
    assert (too_deep.status_code, too_deep.json['code']) == (400, 'too_deep')
    assert '"params" nests deeper' in too_deep.json['detail']
    # As a string it is walked when decoded.
    assert touch(json.dumps(form_of(MAX_DEPTH))).status_code == 200
    too_deep = touch(json.dumps(form_of(MAX_DEPTH + 1)))
    assert (too_deep.status_code, too_deep.json['code']) == (400, 'too_deep')
    assert '"params.params" nests deeper' in too_deep.json['detail']
    assert touched(engine) == 2  # the two accepted runs; the refused ones ran nothing


def add_counters_from(engine: sa.Engine, first: int, last: int) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(Counter(id=i, value=0) for i in range(first, last + 1))


# --- over real HTTP: gunicorn -------------------------------------------------------------

#: gunicorn's threaded worker, and jet_sqla's, which reads each request before a thread sees it.
WORKER_CLASSES = ['gthread', 'jet_sqla.workers.BufferingWorker']


@pytest.fixture(scope='module', params=WORKER_CLASSES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[apps.Gunicorn]:
    with served_app(tmp_path_factory.mktemp('limits'), worker_class=request.param) as served:
        yield served


def served_touches(server: apps.Gunicorn) -> int:
    """``touch``'s runs so far on the served database, read from the database itself."""
    engine = sa.create_engine(f'sqlite:///{server.log_path.parent / "served.db"}')
    try:
        return touched(engine)
    finally:
        engine.dispose()


def raw_exchange(server: apps.Gunicorn, request: bytes, *, half_close: bool = False) -> tuple[int, bytes, bytes]:
    """Send raw bytes; returns the status, headers and body of the first response."""
    with socket.create_connection((server.host, server.port), timeout=15) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b''
        while b'\r\n\r\n' not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, rest = received.partition(b'\r\n\r\n')
        found = re.search(rb'content-length:\s*(\d+)', head, re.IGNORECASE)
        length = int(found.group(1)) if found else None
        while length is not None and len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    status = int(head.split(b' ', 2)[1])
    return status, head, rest[:length] if length is not None else rest


def post_head(length: int | None, extra: str = '') -> bytes:
    framing = f'Content-Length: {length}\r\n' if length is not None else 'Transfer-Encoding: chunked\r\n'
    return (f'POST /api/messages/ HTTP/1.1\r\nHost: test\r\nAuthorization: {AUTH["Authorization"]}\r\n'
            f'Content-Type: application/json\r\n{framing}{extra}\r\n').encode()


@pytest.mark.e2e
def test_chunked_bodies_are_read_and_limited_over_http(server: apps.Gunicorn) -> None:
    before = served_touches(server)

    def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
        for start in range(0, len(body), size):
            yield body[start:start + size]

    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        headers = {**AUTH, 'Content-Type': 'application/json'}
        connection.request('POST', '/api/messages/', body=chunks(touch_body([1, 2])), headers=headers,
                           encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read()) == {'result': True, 'count': 2}
    finally:
        connection.close()
    assert served_touches(server) == before + 2

    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.request('POST', '/api/messages/', body=chunks(padded_to(MIB + 1)), headers=headers,
                           encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader('Content-Type', '').startswith('application/json')
        body = json.loads(response.read())
        assert body['error_code'] == 'too_large' and f'limit of {MIB} bytes' in body['detail']
    finally:
        connection.close()
    assert served_touches(server) == before + 2


@pytest.mark.e2e
def test_a_declared_length_over_the_limit_is_answered_without_waiting_for_the_body(server: apps.Gunicorn) -> None:
    status, head, body = raw_exchange(server, post_head(64 * MIB))  # and not one byte of the body
    assert status == 413
    assert b'application/json' in head.lower()
    assert json.loads(body)['error_code'] == 'too_large'


@pytest.mark.e2e
def test_a_content_length_that_lies_over_http_is_400_json_and_runs_nothing(server: apps.Gunicorn) -> None:
    before = served_touches(server)
    body = touch_body([1])
    # Shorter than the body: the server reads a cut body. (What follows it is the next request's problem.)
    ask = 'Accept: application/problem+json\r\n'  # for the code, which Jet's dialect shows on no 400
    status, _, answer = raw_exchange(server, post_head(len(body) - 5, ask) + body)
    assert (status, json.loads(answer)['code']) == (400, 'invalid_json')
    # Longer than the body, and the client stops sending: the body ends early, and a complete-looking
    # message is still not run.
    status, _, answer = raw_exchange(server, post_head(len(body) + 50, ask) + body, half_close=True)
    assert (status, json.loads(answer)['code']) == (400, 'incomplete_body')
    assert served_touches(server) == before


@pytest.mark.e2e
def test_a_malformed_content_length_is_refused_by_the_server_before_the_app(server: apps.Gunicorn) -> None:
    """gunicorn answers malformed HTTP framing itself, with its own 400; the app never runs."""
    before = served_touches(server)
    body = touch_body([1])
    for length in ('abc', '-1', f'{len(body)}, {len(body)}'):
        status, _, _ = raw_exchange(server, post_head(None).replace(b'Transfer-Encoding: chunked',
                                                                     f'Content-Length: {length}'.encode()) + body)
        assert status == 400, length
    assert served_touches(server) == before
