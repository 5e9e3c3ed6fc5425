"""jet_sqla's gunicorn worker under plain gunicorn: framing it must get right, and gunicorn's own answers in JSON."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jet_sqla import problems

from . import apps
from .conftest import AUTH
from .test_limits import served_app, served_touches, touch_body

WORKER = 'jet_sqla.workers.BufferingWorker'


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[apps.Gunicorn]:
    with served_app(tmp_path_factory.mktemp('workers'), worker_class=WORKER) as served:
        yield served


@pytest.fixture(scope='module')
def gthread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[apps.Gunicorn]:
    with served_app(tmp_path_factory.mktemp('gthread')) as served:
        yield served


def exchange(server: apps.Gunicorn, *parts: bytes, pause: float = 0.0, responses: int = 1,
             timeout: float = 15) -> list[tuple[int, bytes, bytes]]:
    """Send ``parts`` (``pause`` apart), then read ``responses`` answers: (status, head, body) each."""
    answers = []
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(pause)
        buffer = b''
        for _ in range(responses):
            while b'\r\n\r\n' not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            head, _, buffer = buffer.partition(b'\r\n\r\n')
            length = next((int(line.split(b':', 1)[1]) for line in head.split(b'\r\n')
                           if line.lower().startswith(b'content-length:')), 0)
            while len(buffer) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            answers.append((int(head.split(b' ', 2)[1]), head, body))
    return answers


def post(body: bytes, extra: str = '', framing: str | None = None) -> bytes:
    framing = framing if framing is not None else f'Content-Length: {len(body)}\r\n'
    return (f'POST /api/messages/ HTTP/1.1\r\nHost: test\r\nAuthorization: {AUTH["Authorization"]}\r\n'
            f'Content-Type: application/json\r\n{framing}{extra}\r\n').encode() + body


def chunked(body: bytes, size: int) -> list[bytes]:
    pieces = [b'%x\r\n%s\r\n' % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size)]
    return pieces + [b'0\r\n\r\n']


BAD_REQUESTS = {
    'HTTP/0.9 request line': (b'GET /api/health\r\n\r\n', 400),
    'a Content-Length that is not a number': (post(b'{}', framing='Content-Length: abc\r\n'), 400),
    'a header over 8190 bytes': (b'GET /api/health HTTP/1.1\r\nHost: t\r\nX-Big: ' + b'a' * 9000 + b'\r\n\r\n', 431),
    'headers over 64 KiB in all': (b'GET /api/health HTTP/1.1\r\nHost: t\r\n'
                                   + b''.join(b'X-%d: %s\r\n' % (n, b'a' * 8000) for n in range(10)) + b'\r\n', 431),
    'a request line over 4094 bytes': (b'GET /api/health?' + b'a' * 5000 + b' HTTP/1.1\r\nHost: t\r\n\r\n', 414),
    'a transfer coding other than chunked': (post(b'{}', framing='Transfer-Encoding: gzip\r\n'), 400),
}
#: Limits of jet_sqla's worker only: plain gthread serves these.
WORKER_ONLY = {'headers over 64 KiB in all'}


@pytest.mark.e2e
@pytest.mark.parametrize('case', list(BAD_REQUESTS))
def test_gunicorns_own_answers_are_json(server: apps.Gunicorn, gthread: apps.Gunicorn, case: str) -> None:
    request, status = BAD_REQUESTS[case]
    [(got, head, body)] = exchange(server, request)
    assert got == status, (head, body)
    assert b'content-type: application/json' in head.lower()
    decoded = json.loads(body)
    # Jet's dialect, as the app's own errors: a 400 lists what went wrong, any other status names its code.
    assert list(decoded) == ['non_field_errors'] if status == 400 else decoded['error_code'] == problems.code_for_status(status)
    # Problem details when the client asks for them (and its Accept header was read).
    if case == 'headers over 64 KiB in all':
        [(_, head, body)] = exchange(server, request.replace(b'Host: t\r\n', b'Host: t\r\nAccept: application/problem+json\r\n'))
        assert b'application/problem+json' in head and json.loads(body)['status'] == 431
    # What plain gthread answers to the same: the page README lists.
    [(plain, plain_head, _)] = exchange(gthread, request)
    if case in WORKER_ONLY:
        assert plain == 200
    else:
        assert plain == status and b'text/html' in plain_head.lower()


@pytest.mark.e2e
def test_bodies_arriving_in_pieces_are_put_together_and_run(server: apps.Gunicorn) -> None:
    before = served_touches(server)
    body = touch_body([1, 2])
    head, rest = post(body)[: -len(body)], body
    # Headers in two pieces, the body in three, each a moment apart.
    [(status, _, answer)] = exchange(server, head[:20], head[20:], rest[:5], rest[5:9], rest[9:], pause=0.05)
    assert (status, json.loads(answer)) == (200, {'result': True, 'count': 2})
    # Chunked, in small chunks sent apart.
    [(status, _, answer)] = exchange(server, post(b'', framing='Transfer-Encoding: chunked\r\n'),
                                     *chunked(body, 7), pause=0.02)
    assert (status, json.loads(answer)) == (200, {'result': True, 'count': 2})
    # Two requests in one send (pipelined): both answered, in order.
    answers = exchange(server, post(body) + post(touch_body([3])), responses=2)
    assert [(status, json.loads(answer)) for status, _, answer in answers] == \
        [(200, {'result': True, 'count': 2}), (200, {'result': True, 'count': 1})]
    # Expect: 100-continue: gunicorn's parser sends the interim answer, then the body is read.
    [(status, _, answer), (final, _, final_answer)] = exchange(server, post(b'', extra='Expect: 100-continue\r\n',
                                                                           framing=f'Content-Length: {len(body)}\r\n'),
                                                               body, pause=0.2, responses=2)
    assert (status, final, json.loads(final_answer)) == (100, 200, {'result': True, 'count': 2})
    assert served_touches(server) == before + 2 + 2 + 2 + 1 + 2


@pytest.mark.e2e
def test_a_body_of_exactly_one_mib_is_buffered_and_runs(server: apps.Gunicorn, tmp_path: Path) -> None:
    from .test_limits import MIB, padded_to

    before = served_touches(server)
    body = padded_to(MIB)
    [(status, _, answer)] = exchange(server, post(body))
    assert (status, json.loads(answer)['result']) == (200, True)
    assert served_touches(server) == before + 1


@pytest.mark.e2e
def test_a_full_worker_closes_its_oldest_unfinished_connection_to_serve_a_new_one(tmp_path: Path) -> None:
    """gunicorn stops accepting at ``worker_connections``: 60 idle sockets must not lock a worker of 20 out."""
    env = {'GUNICORN_CMD_ARGS': '--worker-connections 20'}
    with served_app(tmp_path, worker_class=WORKER, **env) as small:
        idle = [socket.create_connection((small.host, small.port), timeout=10) for _ in range(60)]
        try:
            time.sleep(0.5)
            # Within a client's timeout of 3 s: gthread makes it wait until the idle ones time out.
            [(status, _, answer)] = exchange(small, post(touch_body([1])), timeout=3)
            assert (status, json.loads(answer)['result']) == (200, True)
            evicted = 0
            for sock in idle:
                sock.settimeout(0.01)
                try:
                    evicted += sock.recv(1) == b''
                except TimeoutError:
                    pass
            assert evicted >= 40  # at most 20 are held at once
        finally:
            for sock in idle:
                sock.close()
