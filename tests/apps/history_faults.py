"""Faults for change history: an audited app whose run can be held at the very COMMIT, for a kill.

Reuses the ``gauges``/``legs`` tables of :mod:`tests.apps.faults`. ``pair`` and
``pair_held_at_commit`` write both legs and bump the gauge; the second then
marks its connection, and an engine ``commit`` listener, which runs just before
the COMMIT is sent, leaves the worker's pid for the test and waits to be
killed. By then the run's log row, with its changes, is written in the
transaction: only the COMMIT is missing.
"""

from __future__ import annotations

import os
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge

from .faults import BLOCK_SECONDS, Base, Gauge, Leg, _mark, make_engine

_HOLD = 'jet_sqla_test_hold_at_commit'


def pair(ref: str, session: Session) -> None:
    session.get_one(Gauge, 1).pairs += 1
    session.add_all([Leg(ref=ref, leg=1), Leg(ref=ref, leg=2)])


def pair_held_at_commit(ref: str, session: Session) -> None:
    pair(ref, session)
    session.connection().info[_HOLD] = ref


def _hold_at_commit(connection: sa.Connection) -> None:
    ref = connection.info.pop(_HOLD, None)
    if ref is not None:
        _mark(ref, 'pid', str(os.getpid()))
        time.sleep(BLOCK_SECONDS)


def create_app() -> Any:
    """The app of one gunicorn worker: audited, with change history."""
    engine = make_engine(os.environ['JET_SQLA_DATABASE_URL'])
    sa.event.listen(engine, 'commit', _hold_at_commit)
    bridge = Bridge(Base, engine=engine, audit=True)
    for action in (pair, pair_held_at_commit):
        bridge.action()(action)
    return bridge.wsgi_app()
