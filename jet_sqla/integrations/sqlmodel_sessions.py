"""SQLModel users get SQLModel sessions: ``session.exec()`` works in their actions.

A SQLModel app writes ``session: Session`` with ``from sqlmodel import Session``
and calls ``session.exec(select(Hero))``. jet_sqla's own sessions were plain
SQLAlchemy ones, which have no ``exec``: the action failed with a 500. When
the bridge serves SQLModel classes and makes its sessions itself (no
``session_factory=``), its sessions are SQLModel's. SQLModel is never
imported here: it is looked up only once the app has imported it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

__all__ = ['session_class_for']

_CACHE: dict[type, type[Session]] = {}


def session_class_for(models: Iterable[type[Any]]) -> type[Session]:
    """SQLModel's ``Session`` (quietened, see below) if any of ``models`` is a SQLModel class, else ``Session``."""
    sqlmodel = sys.modules.get('sqlmodel')
    base = getattr(sqlmodel, 'SQLModel', None)
    session = getattr(sqlmodel, 'Session', None)
    if not (isinstance(base, type) and isinstance(session, type) and issubclass(session, Session)):
        return Session
    if not any(isinstance(model, type) and issubclass(model, base) for model in models):
        return Session
    if session not in _CACHE:
        # SQLModel's execute() and query() warn "you probably want exec()" on every call, and jet_sqla
        # calls execute() itself to load records: SQLAlchemy's own methods, without the warning.
        _CACHE[session] = type('SQLModelSession', (session,), {'execute': Session.execute, 'query': Session.query})
    return _CACHE[session]
