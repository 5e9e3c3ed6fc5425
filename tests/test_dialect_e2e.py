"""Jet Admin's dialect over real HTTP: gunicorn on loopback, raw requests as Jet Admin's client sends them."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from .apps.server import Gunicorn, gunicorn
from .conftest import fresh_engine
from .models import Counter
from .test_auth_attacks import JET_PUBLIC_PEM, PROJECT, claims, signed
from .test_limits import raw_exchange

pytestmark = pytest.mark.e2e

TOKEN = 'dialect-token'


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    directory = tmp_path_factory.mktemp('dialect')
    url = f'sqlite:///{directory / "dialect.db"}'
    engine = fresh_engine(url)
    with Session(engine) as session, session.begin():
        session.add_all(Counter(id=i, value=0) for i in range(1, 61))
    engine.dispose()
    with gunicorn('tests.apps.dialect_app:create_app()', database_url=url, token=TOKEN, log_path=directory / 'log',
                  workers=1, threads=2, env={'JET_SQLA_JWT_PUBLIC_KEY': JET_PUBLIC_PEM,
                                            'JET_SQLA_PROJECT': PROJECT}) as running:
        running.url = url  # type: ignore[attr-defined]
        yield running


def post(server: Gunicorn, message: dict[str, Any], *headers: str) -> tuple[int, str, Any]:
    """One raw HTTP request; ``headers`` are whole header lines, repeated ones included."""
    body = json.dumps(message).encode()
    lines = ''.join(f'{line}\r\n' for line in headers)
    request = (f'POST /api/messages/ HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n'
               f'Content-Length: {len(body)}\r\n{lines}\r\n').encode() + body
    status, head, raw = raw_exchange(server, request)
    content_type = next((line.split(b':', 1)[1].strip().decode() for line in head.split(b'\r\n')
                         if line.lower().startswith(b'content-type:')), '')
    return status, content_type, json.loads(raw)


def values(server: Gunicorn) -> dict[int, int]:
    engine = sa.create_engine(server.url)  # type: ignore[attr-defined]
    try:
        with Session(engine) as session:
            return {c.id: c.value for c in session.scalars(sa.select(Counter))}
    finally:
        engine.dispose()


def add(ids: Any = None, amount: str = '1', **beside: Any) -> dict[str, Any]:
    params: dict[str, Any] = {'name': 'add', 'model': 'counters', **beside, 'params': {'amount': amount}}
    if ids is not None:
        params['ids'] = ids
    return {'name': 'execute_action', 'params': params}


AUTH = f'Authorization: Bearer {TOKEN}'


def test_jet_admins_request_shapes_and_select_all(server: Gunicorn) -> None:
    status, _, body = post(server, add([3, 1], inverseIds=False), AUTH)
    assert (status, body) == (200, {'result': True, 'ids': [3, 1]})
    # 60 counters, max_ids=50: "select all" but 5 is 55 records, a 413 that states the count.
    status, _, body = post(server, add([1, 2, 3, 4, 5], inverseIds=True), AUTH)
    assert status == 413 and '55 records' in body['detail'] and body['error_code'] == 'too_large'
    before = values(server)
    status, _, body = post(server, add(list(range(1, 21)), inverseIds='true'), AUTH)
    assert (status, body) == (200, {'result': True, 'ids': list(range(21, 61))})
    after = values(server)
    assert [i for i in after if after[i] != before[i]] == list(range(21, 61))
    status, _, body = post(server, {'name': 'get_action_list'}, AUTH)
    assert (body[0]['verbose_name'], body[0]['icon']) == ('Add', 'plus')


def test_errors_in_both_dialects_over_http(server: Gunicorn) -> None:
    status, content_type, body = post(server, add([1], amount='500'), AUTH, 'Accept: application/json, */*')
    assert (status, content_type, body) == (400, 'application/json', {'amount': ['At most 100 at a time']})
    status, content_type, body = post(server, add([1], amount='500'), AUTH, 'Accept: application/problem+json')
    assert (status, content_type) == (400, 'application/problem+json')
    assert body['code'] == 'action_error' and body['fields'] == {'amount': 'At most 100 at a time'}
    status, _, body = post(server, {'name': 'execute_action', 'params': {'name': 'add', 'ids': [1],
                                                                          'params': {'ids': '2', 'amount': '1'}}}, AUTH)
    assert status == 400 and list(body) == ['non_field_errors'] and body['non_field_errors'][0].startswith('ids: ')
    status, content_type, body = post(server, add([99]), AUTH)
    assert (status, body['error_code'], body['missing_ids']) == (404, 'records_not_found', [99])


def test_the_authorization_grammar_over_http(server: Gunicorn) -> None:
    assert post(server, {'name': 'get_action_list'}, f'Authorization: ProjectToken {TOKEN};env=prod')[0] == 200
    jwt = signed(claims())
    assert post(server, {'name': 'get_action_list'}, f'Authorization: Token {TOKEN}, JWT {jwt}')[0] == 200
    # Two Authorization headers, the right token first or second: refused either way.
    for first, second in ((TOKEN, 'wrong'), ('wrong', TOKEN)):
        status, _, body = post(server, add([1]), f'Authorization: Bearer {first}', f'Authorization: Bearer {second}')
        assert (status, body['error_code']) == (401, 'unauthorized')
    # gunicorn itself refuses a 10 KiB header line (its limit is 8190 bytes); the app sees up to that.
    status, _, body = post(server, {'name': 'get_action_list'}, 'Authorization: Bearer ' + 'a' * 8100)
    assert status == 401 and body['error_code'] == 'unauthorized' and 'a' * 20 not in json.dumps(body)


def test_jet_permissions_over_http(server: Gunicorn) -> None:
    def grant(**entry: Any) -> str:
        return f'Authorization: JWT {signed(claims(projects={PROJECT: entry}))}'

    writer = base64.b64encode(gzip.compress(json.dumps([{
        'permission_type': 'model', 'permission_object': 'db.counters', 'permission_actions': 'rw'}]).encode())).decode()
    assert post(server, add([1]), grant(owner=True))[0] == 200
    assert post(server, add([1]), grant(permissions=writer))[0] == 200
    status, _, body = post(server, add([1]), grant(member=True))
    assert status == 403 and "'counters'" in body['detail']
    status, _, body = post(server, add([1]), grant(permissions='%%%'))
    assert status == 403 and body['error_code'] == 'forbidden'
