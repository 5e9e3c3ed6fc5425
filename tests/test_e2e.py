"""End to end: the example shop under gunicorn on loopback, spoken to over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .apps.server import Gunicorn, MessageClient, gunicorn

TOKEN = 'e2e-token'

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    directory = tmp_path_factory.mktemp('e2e')
    with gunicorn('jet_sqla.examples.shop.jet:app', database_url=f'sqlite:///{directory / "shop.db"}',
                  token=TOKEN, log_path=directory / 'gunicorn.log', workers=2, threads=4,
                  env={'JET_SQLA_CONSOLE': '1'}) as running:
        yield running


@pytest.fixture
def client(server: Gunicorn) -> Iterator[MessageClient]:
    client = server.client(timeout=10)
    yield client
    client.close()


def test_action_list_over_http(client: MessageClient) -> None:
    reply = client.message('get_action_list')
    assert reply.status == 200 and reply.content_type == 'application/json'
    names = {action['name'] for action in reply.body}
    assert {'mail_users', 'refresh_users_status', 'rebuild_index', 'account_transfer'} <= names


def test_bulk_action_and_rollback_over_http(client: MessageClient) -> None:
    reply = client.execute('mail_users', 'users', ids='1,2', subject='Hello')
    assert (reply.status, reply.body) == (200, {'result': True, 'sent': 2})
    before = client.message('list_records', {'model': 'accounts', 'limit': 2})
    assert before.status == 200
    reply = client.execute('account_transfer', account_from=1, account_to=2, amount_from='1000000', amount_to='1')
    assert reply.status == 400 and list(reply.body) == ['non_field_errors']  # Jet's dialect, by default
    after = client.message('list_records', {'model': 'accounts', 'limit': 2})
    assert after.body['records'] == before.body['records']


def test_options_over_http(client: MessageClient) -> None:
    reply = client.message('get_field_options', {'model': 'orders', 'field': 'city', 'form': {'country': 'uk'}})
    assert reply.status == 200
    assert [option['value'] for option in reply.body] == ['London', 'Leeds']


def test_errors_over_http_are_json(server: Gunicorn) -> None:
    anonymous = MessageClient(server.host, server.port, token='wrong', timeout=10)
    try:
        reply = anonymous.message('get_action_list')
        assert reply.status == 401 and reply.body['error_code'] == 'unauthorized'
    finally:
        anonymous.close()
    client = server.client(timeout=10)
    try:
        reply = client.message('nope')
        assert reply.status == 400 and "Unknown message 'nope'" in reply.body['non_field_errors'][0]
        reply = client.request('POST', '/api/messages', '{"name": "get_action_list"}')
        assert reply.status == 200 and isinstance(reply.body, list)
        reply = client.request('GET', '/api/messages/')
        assert reply.status == 405 and reply.content_type == 'application/json'
    finally:
        client.close()
