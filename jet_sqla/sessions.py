"""The app's own sessions: a ``sessionmaker``, or any zero-argument callable returning a ``Session``.

jet_sqla opens, commits and rolls back each run's transaction itself (in
:mod:`jet_sqla.actions`); the factory decides everything else: its events
(``do_orm_execute`` filters, ``before_flush`` hooks), its options and its binds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

__all__ = ['SessionFactory', 'database_of', 'engines_of']

#: A ``sessionmaker``, a ``scoped_session``, or any zero-argument callable returning a ``Session``.
SessionFactory = Callable[[], Session]


def _as_engine(bind: Any) -> sa.Engine | None:
    if isinstance(bind, sa.Engine):
        return bind
    if isinstance(bind, sa.Connection):
        return bind.engine
    return None


def _open(factory: SessionFactory) -> Session:
    session = factory()
    if not isinstance(session, Session):
        raise TypeError(f'session_factory must return a sqlalchemy.orm.Session, not {type(session).__name__}')
    return session


def _binds(factory: SessionFactory) -> tuple[sa.Engine | None, list[sa.Engine]]:
    """The default engine of the factory's sessions, and every engine they may use."""
    session = _open(factory)
    try:
        default = _as_engine(session.bind)
        others = [engine for engine in map(_as_engine, session.binds.values()) if engine is not None]
    finally:
        session.close()
    return default, others


def database_of(factory: SessionFactory) -> sa.Engine:
    """The engine a factory's sessions are bound to: its default bind, else its first per-model bind.

    Raises:
        TypeError: the factory's sessions are bound to nothing, or it returns no ``Session``.
    """
    default, others = _binds(factory)
    engine = default or (others[0] if others else None)
    if engine is None:
        raise TypeError('session_factory makes sessions bound to no engine; bind it, or pass engine= as well')
    return engine


def engines_of(engine: sa.Engine, factory: SessionFactory | None) -> list[sa.Engine]:
    """``engine`` and every engine the factory's sessions are bound to, each once."""
    engines = {id(engine): engine}
    if factory is not None:
        default, others = _binds(factory)
        engines.update((id(each), each) for each in ([default] if default else []) + others)
    return list(engines.values())
