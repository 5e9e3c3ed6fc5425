"""Foreign-key option pages read outside any transaction where that is free (PostgreSQL)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge

from .conftest import Client
from .models import User

pytestmark = pytest.mark.parametrize('dialect', ['postgresql'], indirect=True)


def transaction_states(engine: sa.Engine) -> list[psycopg.pq.TransactionStatus]:
    """The server's transaction state after each statement (psycopg's ReadyForQuery status)."""
    states: list[psycopg.pq.TransactionStatus] = []

    def after(conn: sa.Connection, cursor: Any, statement: str, *args: Any) -> None:
        if 'FROM users' in statement:
            states.append(conn.connection.dbapi_connection.info.transaction_status)  # type: ignore[union-attr]

    sa.event.listen(engine, 'after_cursor_execute', after)
    return states


def test_option_pages_open_no_transaction(client: Client, engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=f'user {i}') for i in range(1, 4))
    states = transaction_states(engine)
    options = client.message('get_field_options', {'model': 'accounts', 'field': 'owner_id', 'q': 'user'})
    assert options.status_code == 200 and [o['value'] for o in options.json] == [1, 2, 3]
    after = client.message('get_field_options', {'model': 'accounts', 'field': 'owner_id', 'after': 1})
    assert after.status_code == 200 and [o['value'] for o in after.json] == [2, 3]
    # IDLE: the SELECT ran alone; INTRANS would mean a BEGIN before it and a ROLLBACK to come.
    assert states == [psycopg.pq.TransactionStatus.IDLE] * 2


def test_an_action_after_a_read_still_runs_in_its_transaction(bridge: Bridge, client: Client,
                                                              engine: sa.Engine) -> None:
    """The pooled connection leaves autocommit when the read ends: a failed run still rolls back."""
    engine.pool.dispose()
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
    states = transaction_states(engine)

    @bridge.action(model=User, for_instance=True)
    def rename_then_fail(user: User, session: Session) -> None:
        user.name = 'renamed'
        session.flush()
        session.execute(sa.select(User.id).where(User.id == 1))
        raise RuntimeError('after the write')

    assert client.message('get_field_options', {'model': 'accounts', 'field': 'owner_id'}).status_code == 200
    assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]  # the same connection serves the run below
    assert client.execute('rename_then_fail', id=1).status_code == 500
    assert states[0] == psycopg.pq.TransactionStatus.IDLE
    assert psycopg.pq.TransactionStatus.INTRANS in states[1:]  # the run's SELECTs were inside its transaction
    with Session(engine) as session:
        assert session.get(User, 1).name == 'Ada'  # type: ignore[union-attr]
