"""``jet-sqla serve``: what gunicorn refuses before the app runs is JSON too, never its HTML page."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from .apps.cli_server import free_port, run, serving
from .conftest import TOKEN


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (http.client would refuse some of them) and read the whole answer."""
    with socket.create_connection(('127.0.0.1', port), timeout=30) as sock:
        sock.sendall(request)
        received = b''
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b'\r\n\r\n')
    status_line, *header_lines = head.decode('latin-1').split('\r\n')
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(':') for line in header_lines)}
    return int(status_line.split()[1]), headers, body


# The default worker refuses on its event loop; gthread reaches gunicorn's own writer, replaced by serve.
@pytest.fixture(scope='module', params=['default', 'gthread'])
def port(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp('refusals')
    url = f'sqlite:///{directory / "empty.db"}'
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)'))
    engine.dispose()
    port = free_port()
    worker = [] if request.param == 'default' else ['--worker-class', request.param]
    with serving(['serve', url, '--bind', f'127.0.0.1:{port}', '--workers', '1', '--threads', '2', *worker],
                 log_path=directory / 'server.log', token=TOKEN, env={'JET_SQLA_TOKEN': TOKEN}):
        yield port


BODY = b'{"name": "get_action_list"}'


@pytest.mark.parametrize(('request_bytes', 'status', 'says'), [
    # An Authorization header of 10 KiB: Jet's grammar allows several credentials, gunicorn's limit is 8190.
    (b'POST /api/messages/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ' + b'a' * 10240
     + b'\r\nContent-Length: %d\r\n\r\n' % len(BODY) + BODY, 431, 'header is too long'),
    (b'POST /api/messages/?' + b'q' * 5000 + b' HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n' % len(BODY) + BODY,
     414, 'JSON body'),
    (b'NOT A REQUEST\r\n\r\n', 400, ''),
], ids=['header-too-long', 'request-line-too-long', 'malformed'])
def test_gunicorn_refusals_are_json(port: int, request_bytes: bytes, status: int, says: str) -> None:
    got, headers, body = raw_exchange(port, request_bytes)
    assert got == status, body
    assert headers['content-type'] == 'application/json', body
    assert int(headers['content-length']) == len(body)
    decoded = json.loads(body)
    if status == 400:  # Jet's dialect: a 400 is general errors, shown as they are
        assert set(decoded) == {'non_field_errors'} and len(decoded['non_field_errors']) == 1
        message = decoded['non_field_errors'][0]
    else:
        assert set(decoded) == {'detail', 'error', 'error_code'} and decoded['detail'] == decoded['error']
        assert decoded['error_code'] == {431: 'request_header_fields_too_large', 414: 'request_uri_too_long'}[status]
        message = decoded['detail']
    assert says in message
    assert b'aaaaaaaaaa' not in body  # the credential is never echoed


def test_the_app_still_answers_after_a_refusal(port: int) -> None:
    raw_exchange(port, b'NOT A REQUEST\r\n\r\n')
    request = (b'POST /api/messages/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer '
               + TOKEN.encode() + b'\r\nContent-Length: %d\r\n\r\n' % len(BODY) + BODY)
    status, _, body = raw_exchange(port, request)
    assert status == 200 and json.loads(body) == []


def test_demo_on_a_busy_port_prints_no_banner_and_says_how_to_move(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = run(['demo', '--bind', f'127.0.0.1:{taken}'], cwd=tmp_path)
    assert result.returncode == 1
    # The banner (URL, token, curl line) used to be printed first, pointing at whatever held the port.
    assert 'Token' not in result.stdout and 'curl' not in result.stdout, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error:')]  # beside the structured log
    assert len(errors) == 1 and f'cannot listen on 127.0.0.1:{taken}' in errors[0] and '--bind HOST:PORT' in errors[0]
