"""list_records: the console's read-only, paged table of a collection's rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .conftest import Client
from .models import Account, User


def seed(engine: sa.Engine, count: int) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=f'user {i}') for i in range(1, count + 1))
        session.flush()
        session.add(Account(id=1, owner_id=1, balance=Decimal('12.30')))


def test_listing_is_off_unless_the_console_is_on(client: Client, engine: sa.Engine) -> None:
    seed(engine, 1)
    result = client.message('list_records', {'model': 'users'})
    assert result.status_code == 400
    assert result.json['code'] == 'unknown_message'


def test_pages_rows_in_key_order_with_columns_and_has_more(make_bridge: Any, engine: sa.Engine) -> None:
    seed(engine, 25)
    client = Client(make_bridge(console=True))
    first = client.message('list_records', {'model': 'users'})
    assert first.status_code == 200, first.text
    assert first.json['pk'] == 'id'
    assert [column['name'] for column in first.json['columns']] == ['id', 'name', 'email', 'tier', 'status', 'mood']
    assert {column['name']: column['field'] for column in first.json['columns']}['tier'] == 'SelectField'
    assert [row['id'] for row in first.json['records']] == list(range(1, 21))
    assert first.json['has_more'] is True
    last = client.message('list_records', {'model': 'users', 'limit': 20, 'offset': 20}).json
    assert [row['id'] for row in last['records']] == [21, 22, 23, 24, 25]
    assert last['has_more'] is False


def test_values_are_encoded_exactly(make_bridge: Any, engine: sa.Engine) -> None:
    seed(engine, 1)
    result = Client(make_bridge(console=True)).message('list_records', {'model': 'accounts'})
    assert result.json['records'] == [{'id': 1, 'owner_id': 1, 'balance': '12.30'}]


def test_bad_listing_params_are_4xx(make_bridge: Any) -> None:
    client = Client(make_bridge(console=True))
    assert client.message('list_records', {'model': 'nope'}).json['code'] == 'not_found'
    for params, field in (({}, 'model'), ({'model': 'users', 'limit': 0}, 'limit'),
                          ({'model': 'users', 'offset': 'x'}, 'offset')):
        result = client.message('list_records', params)
        assert result.status_code == 400 and field in result.json['fields']


def test_foreign_key_columns_carry_the_related_labels(make_bridge: Any, engine: sa.Engine,
                                                      statements: Any) -> None:
    """Each foreign-key column names its collection, and each key on the page comes with its row's label,
    in one query per foreign-key column however many rows the page holds."""
    with Session(engine) as session, session.begin():
        session.add_all([User(id=1, name='Ada'), User(id=2, name='Grace'), User(id=3, name='Unused')])
        session.flush()
        session.add_all(Account(id=i, owner_id=1 if i % 2 else 2, balance=Decimal(i)) for i in range(1, 8))
    client = Client(make_bridge(console=True))
    with statements as log:
        result = client.message('list_records', {'model': 'accounts'})
    assert result.status_code == 200, result.text
    columns = {column['name']: column for column in result.json['columns']}
    assert columns['owner_id']['related'] == 'users' and 'related' not in columns['id']
    assert result.json['labels'] == {'owner_id': {'1': 'Ada', '2': 'Grace'}}  # only the keys on the page
    assert len([s for s in log.selects() if 'FROM users' in s]) == 1
    users = client.message('list_records', {'model': 'users'}).json
    assert users['labels'] == {} and not any('related' in column for column in users['columns'])
