"""Targets for ``jet-sqla serve`` and ``jet-sqla actions`` in the tests, and what their actions need.

Each target is a function that builds its Bridge from ``JET_SQLA_DATABASE_URL``
(``jet-sqla`` calls a function target), so importing this module has no side
effects and one test process can load a target many times.
"""

from __future__ import annotations

import os
import time
from typing import Any

import falcon
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import ActionError, Bridge

from ..models import Base, Counter, Tier, User

#: How long an action waits for a concurrent request to queue up behind it.
WAITER_SECONDS = 10.0


def _engine() -> sa.Engine:
    url = os.environ['JET_SQLA_DATABASE_URL']
    connect_args = {} if url.startswith('sqlite') else {'connect_timeout': 5}
    return sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def claim_waiters(connection: sa.Connection) -> int:
    """How many other sessions of this database are inside an INSERT of an audit row, waiting for it.

    A run's own claim is inserted before its action starts, so while the action runs, such an
    INSERT can only be a concurrent run queued behind the key it holds.
    """
    if connection.dialect.name == 'postgresql':
        statement = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' "
                     "AND query LIKE 'INSERT INTO jet_sqla_action_log%'")
    else:
        # Not information_schema.innodb_trx: MariaDB does not always list a waiting INSERT's transaction there.
        statement = ("SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
                     "AND id <> CONNECTION_ID() AND command = 'Query' "
                     "AND info LIKE 'INSERT INTO jet_sqla_action_log%'")
    return int(connection.execute(sa.text(statement)).scalar_one())


def wait_for_claim_waiter(engine: sa.Engine, seconds: float = WAITER_SECONDS) -> bool:
    """True once another run queues behind this one's key (seen from a connection of its own); False after ``seconds``."""
    deadline = time.monotonic() + seconds
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            if claim_waiters(connection) > 0:
                return True
            connection.rollback()  # a fresh snapshot on the next look
            time.sleep(0.02)
    return False


def declare_increment(bridge: Bridge) -> None:
    """``increment``: adds one to a counter, then waits for a concurrent run with its key to queue behind it."""

    @bridge.action(model=Counter, for_instance=True)
    def increment(counter: Counter) -> dict[str, Any]:
        counter.value += 1
        return {'value': counter.value, 'saw_waiter': wait_for_claim_waiter(bridge.engine)}


def declare_promote(bridge: Bridge) -> None:
    """``promote``: moves a user to gold; refuses one already gold."""

    @bridge.action(model=User, for_instance=True)
    def promote(user: User) -> dict[str, str]:
        if user.tier is Tier.GOLD:
            raise ActionError(f'{user.name} is already gold')
        user.tier = Tier.GOLD
        return {'tier': user.tier.name}


def plain() -> Bridge:
    """The test models with ``promote``, no audit."""
    bridge = Bridge(Base, engine=_engine())
    declare_promote(bridge)
    return bridge


def app() -> falcon.App:
    """A falcon.App target whose Bridge lives in no module variable."""
    return plain().wsgi_app()


def audited() -> Bridge:
    """The test models with ``promote`` and ``increment``, audited."""
    bridge = Bridge(Base, engine=_engine(), audit=True)
    declare_promote(bridge)
    declare_increment(bridge)
    return bridge


def crashing() -> Bridge:
    """Audited; the worker process dies after the action and its audit row, before the commit."""
    bridge = audited()

    @sa.event.listens_for(bridge.sessions, 'before_commit')
    def die(session: Session) -> None:
        os._exit(17)  # no exception handler, no rollback, no failure row: the process is simply gone

    return bridge
