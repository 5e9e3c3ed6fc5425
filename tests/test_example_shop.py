"""The shop example, as gunicorn would serve it: its typed actions and options through the real app."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import Session

from jet_sqla.examples.shop.models import Account, Order, OrderStatus, Tier, Transfer, User

MODULE = 'jet_sqla.examples.shop.jet'
SHOP_TOKEN = 'shop-token'


class Shop:
    """The imported example module, and a client speaking to its ``app``."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.engine: sa.Engine = module.engine
        self.http = testing.TestClient(module.app, headers={'Authorization': f'Bearer {SHOP_TOKEN}'})

    def message(self, name: str, params: dict[str, Any] | None = None) -> testing.Result:
        return self.http.simulate_post('/api/messages/', json={'name': name, 'params': params or {}})

    def execute(self, action: str, model: str | None = None, **form: Any) -> testing.Result:
        params: dict[str, Any] = {'name': action, 'params': form}
        if model is not None:
            params['model'] = model
        return self.message('execute_action', params)

    def balances(self) -> dict[int, Decimal]:
        with Session(self.engine) as session:
            return {account.id: account.balance for account in session.scalars(sa.select(Account))}

    def transfers(self) -> list[Transfer]:
        with Session(self.engine) as session:
            return list(session.scalars(sa.select(Transfer).order_by(Transfer.id)))


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Shop]:
    # The example builds its bridge at import, from the environment.
    monkeypatch.setenv('JET_SQLA_DATABASE_URL', f'sqlite:///{tmp_path / "shop.db"}')
    monkeypatch.setenv('JET_SQLA_TOKEN', SHOP_TOKEN)
    for name in ('JET_SQLA_INSECURE', 'JET_SQLA_CONSOLE', 'JET_SQLA_JWT_PUBLIC_KEY', 'JET_SQLA_PROJECT'):
        monkeypatch.delenv(name, raising=False)
    sys.modules.pop(MODULE, None)
    module = importlib.import_module(MODULE)
    try:
        yield Shop(module)
    finally:
        module.engine.dispose()
        sys.modules.pop(MODULE, None)
        package = sys.modules.get('jet_sqla.examples.shop')
        if package is not None and getattr(package, 'jet', None) is module:
            delattr(package, 'jet')


ALL_100 = {i: Decimal('100.00') for i in range(1, 9)}


def test_account_transfer_is_described_as_typed_params(shop: Shop) -> None:
    result = shop.message('get_action_list')
    assert result.status_code == 200
    by_name = {item['name']: item for item in result.json}
    assert list(by_name) == ['mail_users', 'promote', 'refresh_users_status', 'cancel_orders', 'apply_discount',
                             'rebuild_index', 'account_transfer']
    transfer = by_name['account_transfer']
    assert transfer['common_action'] == {}
    assert transfer['params'] == [
        {'name': 'account_from', 'field': 'ForeignKey', 'required': True,
         'params': {'related_model': {'model': 'accounts'}}},
        {'name': 'amount_from', 'field': 'DecimalField', 'required': True, 'params': {}},
        {'name': 'account_to', 'field': 'ForeignKey', 'required': True,
         'params': {'related_model': {'model': 'accounts'}}},
        {'name': 'amount_to', 'field': 'DecimalField', 'required': True, 'params': {}},
        {'name': 'description', 'field': 'TextField', 'required': False, 'label': 'Description', 'params': {}},
        {'name': 'when', 'field': 'DateTimeField', 'required': False, 'params': {}},
    ]
    assert shop.module.bridge.actions.get('account_transfer').lock is True


def test_transfer_moves_exact_amounts_and_records_it(shop: Shop) -> None:
    selects: list[tuple[str, Any]] = []
    sa.event.listen(shop.engine, 'before_cursor_execute',
                    lambda conn, cursor, statement, parameters, context, many:
                    selects.append((statement, parameters)) if statement.startswith('SELECT') else None)

    result = shop.execute('account_transfer', account_from='3', amount_from='12.30', account_to=1,
                          amount_to='11.05', description='rent, May', when='2024-05-01T10:00:00+02:00')
    assert result.status_code == 200, result.text
    assert result.json == {'result': True, 'from_balance': '87.70', 'to_balance': '111.05'}
    assert shop.balances() == {**ALL_100, 1: Decimal('111.05'), 3: Decimal('87.70')}
    (transfer,) = shop.transfers()
    assert (transfer.account_from_id, transfer.account_to_id, transfer.amount, transfer.note) == (
        3, 1, Decimal('12.30'), 'rent, May')
    assert transfer.created_at.replace(tzinfo=None) == datetime(2024, 5, 1, 10, 0)
    # Both accounts come from one SELECT, in primary-key order (the order rows are locked in).
    # (The background runner's own look at jet_sqla_job, on its thread, is not the action's.)
    (select, parameters) = next(item for item in selects if 'jet_sqla_' not in item[0])
    assert 'accounts' in select and 'ORDER BY' in select.upper()
    assert list(parameters)[:2] == [1, 3]


def test_optional_fields_may_be_left_out(shop: Shop) -> None:
    result = shop.execute('account_transfer', account_from=1, amount_from='0.01', account_to=2, amount_to='0.01')
    assert result.status_code == 200, result.text
    (transfer,) = shop.transfers()
    assert transfer.note == '' and transfer.created_at is not None


def test_bad_values_are_all_named_and_nothing_is_written(shop: Shop) -> None:
    result = shop.execute('account_transfer', account_from='', amount_from='12,30', account_to='two',
                          amount_to=True, when='next friday', description={'text': 'x'})
    assert result.status_code == 400
    # Jet's dialect, as its client renders it: each field's reasons under the field's name, nothing else.
    assert result.json == {
        'account_from': ['this field is required'],
        'amount_from': ["'12,30' is not a valid decimal number"],
        'account_to': ["'two' is not a valid integer"],
        'amount_to': ['expected a decimal number, got a boolean'],
        'description': ['expected a string, got an object'],
        'when': ["'next friday' is not a valid ISO 8601 datetime"],
    }
    assert shop.balances() == ALL_100 and shop.transfers() == []


def test_unknown_account_is_named(shop: Shop) -> None:
    result = shop.execute('account_transfer', account_from=1, amount_from='1', account_to=99, amount_to='1')
    assert result.status_code == 400
    assert result.json == {'account_to': ['no accounts record with id 99']}
    assert shop.balances() == ALL_100 and shop.transfers() == []


@pytest.mark.parametrize(('form', 'message'), [
    ({'account_from': 1, 'account_to': 1, 'amount_from': '1', 'amount_to': '1'}, 'Pick two different accounts'),
    ({'account_from': 1, 'account_to': 2, 'amount_from': '-1', 'amount_to': '1'}, 'Amounts must be positive'),
    ({'account_from': 1, 'account_to': 2, 'amount_from': '100.01', 'amount_to': '1'},
     "Ada's account has only 100.00"),
])
def test_refused_transfers_roll_back(shop: Shop, form: dict[str, Any], message: str) -> None:
    result = shop.execute('account_transfer', **form)
    assert result.status_code == 400
    assert result.json == {'non_field_errors': [message]}
    assert shop.balances() == ALL_100 and shop.transfers() == []


def test_account_options_for_the_transfer_form(shop: Shop) -> None:
    result = shop.message('get_field_options', {'action': 'account_transfer', 'field': 'account_to', 'q': 'GRACE'})
    assert result.status_code == 200
    assert [(option['value'], option['name']) for option in result.json] == [(3, "Grace's account")]
    page = shop.message('get_field_options', {'action': 'account_transfer', 'field': 'account_from',
                                              'limit': 2, 'offset': 1}).json
    assert [option['value'] for option in page] == [2, 3]


def test_city_options_depend_on_the_country(shop: Shop) -> None:
    def cities(form: dict[str, Any]) -> list[str]:
        result = shop.message('get_field_options', {'model': 'orders', 'field': 'city', 'form': form})
        assert result.status_code == 200
        return [option['value'] for option in result.json]

    assert cities({'country': 'uk'}) == ['London', 'Leeds']
    assert cities({'country': 'italy'}) == ['Rome', 'Milan', 'Turin']
    assert len(cities({})) == 7


def test_the_other_actions(shop: Shop) -> None:
    mailed = shop.execute('mail_users', 'users', ids='2,1', subject='Hello')
    assert (mailed.status_code, mailed.json) == (200, {'result': True, 'sent': 2})
    no_subject = shop.execute('mail_users', 'users', ids='2,1')
    assert no_subject.status_code == 400 and no_subject.json == {'subject': ['this field is required']}

    with Session(shop.engine) as session:
        gold = session.scalars(sa.select(User.id).where(User.tier == Tier.GOLD)).first()
        bronze = session.scalars(sa.select(User.id).where(User.tier == Tier.BRONZE)).first()
        shipped = session.scalars(sa.select(Order.id).where(Order.status == OrderStatus.SHIPPED)).first()
        new = session.scalars(sa.select(Order.id).where(Order.status == OrderStatus.NEW)).first()
    assert shop.execute('promote', 'users', id=bronze).status_code == 200
    already = shop.execute('promote', 'users', id=gold)
    assert already.status_code == 400 and list(already.json) == ['non_field_errors']

    refused = shop.execute('cancel_orders', 'orders', ids=[new, shipped])
    assert refused.status_code == 400 and 'cannot be cancelled' in refused.json['non_field_errors'][0]
    cancelled = shop.execute('cancel_orders', 'orders', ids=[new], reason='customer asked')
    assert (cancelled.status_code, cancelled.json) == (200, {'result': True, 'cancelled': 1})
    with Session(shop.engine) as session:
        assert session.get(Order, new).status is OrderStatus.CANCELLED  # type: ignore[union-attr]
        assert session.get(Order, shipped).status is OrderStatus.SHIPPED  # type: ignore[union-attr]

    counted = shop.execute('rebuild_index')
    assert counted.status_code == 200
    assert counted.json['users'] == 8 and counted.json['accounts'] == 8 and counted.json['transfers'] == 0

    refreshed = shop.execute('refresh_users_status', 'users')
    assert refreshed.status_code == 200 and refreshed.json['deactivated'] == 0  # every seeded user has an order


def test_needs_the_token(shop: Shop) -> None:
    result = shop.http.simulate_post('/api/messages/', json={'name': 'get_action_list'},
                                     headers={'Authorization': 'Bearer wrong'})
    assert result.status_code == 401
    assert result.json['error_code'] == 'unauthorized' and result.json['detail'] == result.json['error']


def test_the_background_discount_runs_on_the_embedded_pool(shop: Shop) -> None:
    import time

    with Session(shop.engine) as session:
        before = {order.id: order.total for order in session.scalars(sa.select(Order))}
    accepted = shop.message('execute_action', {'name': 'apply_discount', 'model': 'orders', 'inverseIds': True,
                                               'params': {'percent': 50}})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json['total'] == len(before) and accepted.json['chunks'] == (len(before) + 1) // 2
    deadline = time.monotonic() + 30
    while (state := shop.message('get_job', {'job': accepted.json['job']}).json)['status'] != 'succeeded':
        assert time.monotonic() < deadline and state['status'] in ('queued', 'running'), state
        time.sleep(0.05)
    assert state['done'] == len(before)
    with Session(shop.engine) as session:
        after = {order.id: order.total for order in session.scalars(sa.select(Order))}
    assert after == {key: (value / 2).quantize(Decimal('0.01')) for key, value in before.items()}
