"""How a Bridge's parts are put together over a database, and checked before a server starts.

:class:`~jet_sqla.bridge.Bridge` holds the configuration and the public API.
Here the engine it runs on is chosen (:func:`engine_given`) and its services
are built: the sessions, the audit log, the Executor, the run history, the read
engine, the Dispatcher and the background jobs. They are built when the bridge
is given its database, which an integration may do only later
(Flask-SQLAlchemy, at ``init_app``). :func:`route_options` is what the HTTP
layer is handed, once everything it needs has been checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import database, openapi
from .actions import Executor
from .audit import AuditLog
from .database import pool_options
from .history import RunHistory
from .integrations.async_engines import is_async_engine, sync_engine_for, sync_url
from .integrations.sqlmodel_sessions import session_class_for
from .jobs import Jobs
from .messages import CANCEL_JOB, GET_JOB, Dispatcher
from .permissions import JetPermissions
from .sessions import SessionFactory, database_of, engines_of

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .bridge import Bridge

__all__ = ['Settings', 'engine_given', 'reflected', 'route_options', 'wire_database']


@dataclass(frozen=True)
class Settings:
    """The Bridge's arguments that shape its services (see :class:`~jet_sqla.bridge.Bridge` for each)."""

    audit: bool
    history: bool
    max_changes: int
    max_ids: int
    max_job_ids: int
    retries: int
    permissions: JetPermissions | None
    query_timeout: float | None
    max_search_length: int
    broker: str | None
    job_queue: str
    job_threads: int


def engine_given(engine: sa.Engine | AsyncEngine | None, session_factory: SessionFactory | None) -> sa.Engine | None:
    """The engine a Bridge runs on: ``engine=`` (a sync one for an async engine), else the session factory's bind.

    Raises:
        TypeError: ``engine`` is not an engine (a URL, say).
    """
    if engine is None:
        return database_of(session_factory) if session_factory is not None else None
    # Actions are plain functions in a thread: an async engine is answered with a sync one.
    sync_engine = sync_engine_for(engine) if is_async_engine(engine) else engine
    if not isinstance(sync_engine, sa.Engine):
        # A URL here used to fail deep in SQLAlchemy ("No such event 'checkin'"). The URL is not
        # echoed: it may hold a password.
        raise TypeError(f'engine= takes an Engine (or an AsyncEngine), not a {type(engine).__name__}: '
                        'pass sqlalchemy.create_engine(url)')
    return sync_engine


def wire_database(bridge: Bridge, engine: sa.Engine, session_factory: SessionFactory | None) -> None:
    """Build ``bridge``'s services over ``engine``, in sessions from ``session_factory`` (or its own)."""
    settings = bridge.settings
    for each in engines_of(engine, session_factory):
        database.install(each)
    bridge.sessions = (
        session_factory if session_factory is not None
        else sessionmaker(engine, expire_on_commit=False,
                          class_=session_class_for(collection.model for collection in bridge.catalog))
    )
    bridge.audit = AuditLog(engine) if settings.audit else None
    bridge.executor = Executor(bridge.catalog, bridge.sessions, audit=bridge.audit,
                               max_ids=settings.max_ids, retries=settings.retries,
                               permissions=settings.permissions, max_job_ids=settings.max_job_ids,
                               history=settings.history, max_changes=settings.max_changes)
    bridge.history = RunHistory(engine, bridge.catalog, bridge.actions, bridge.executor,
                                enabled=bridge.executor.history)
    # Options and listings read through this engine: on PostgreSQL, a pool whose connections
    # carry the statement timeout (see database.read_engine); elsewhere, or when the app's own
    # sessions must carry its filters, ``engine`` itself (each read then sets the bound).
    bridge.read_engine = (database.read_engine(engine, settings.query_timeout) if session_factory is None
                          else engine)
    read_sessions: Callable[[], Session] = (sessionmaker(bridge.read_engine, expire_on_commit=False)
                                            if bridge.read_engine is not engine else bridge.sessions)
    bridge.dispatcher = Dispatcher(bridge.catalog, bridge.actions, bridge.options, bridge.executor,
                                   read_sessions, bridge.messages, engine=bridge.read_engine,
                                   listing=bridge.console, history=bridge.history,
                                   read_timeout=settings.query_timeout,
                                   max_search_length=settings.max_search_length)
    # Background runs: recorded, published, run chunk by chunk, and reported (jet_sqla.jobs).
    bridge.jobs = Jobs(engine, bridge.catalog, bridge.actions, bridge.executor, context=bridge._run_context,
                       broker=settings.broker, queue=settings.job_queue, threads=settings.job_threads)
    bridge.executor.jobs = bridge.jobs
    bridge.dispatcher.add_route(GET_JOB, bridge.jobs.get_job)
    bridge.dispatcher.add_route(CANCEL_JOB, bridge.jobs.cancel_job)
    # The app's own sessions carry its filters (soft delete, tenants): option queries go through them too.
    bridge.dispatcher.options_in_sessions = session_factory is not None


def route_options(bridge: Bridge, route_prefix: str | None = None) -> dict[str, Any]:
    """What the HTTP layer needs; checked and warned about as the server starts.

    Args:
        route_prefix: Where the routes go in the Falcon app, when another app
            strips the bridge's prefix before it (Flask, Starlette mounts).
    """
    bridge._require_database()
    bridge.catalog.refresh()  # classes mapped after the bridge was built (a Flask app's models module)
    if bridge.audit is not None:
        bridge.audit.check_ready()
    if any(action.background for action in bridge.actions):
        bridge.jobs.check_ready()
        # Started on the first message, in the process that serves it: a pool made
        # here could be in a server's master, whose threads a fork leaves behind.
        bridge.dispatcher.before = bridge.jobs.ensure_started
    bridge._warn_if_insecure()
    return {
        'dispatcher': bridge.dispatcher,
        'authenticator': bridge.authenticator,
        'engine': bridge.engine,
        'prefix': bridge.prefix if route_prefix is None else route_prefix,
        'max_body_size': bridge.max_body_size,
        'console': bridge.console,
        'openapi': openapi.document(prefix=bridge.prefix, max_body_size=bridge.max_body_size,
                                    max_ids=bridge.executor.max_ids,
                                    collections=tuple(collection.name for collection in bridge.catalog),
                                    listing=bridge.console, history=bridge.executor.history),
    }


def reflected(database_url: str | sa.Engine | AsyncEngine, schemas: Sequence[str | None]) -> tuple[sa.Engine, sa.MetaData]:
    """The engine of :meth:`Bridge.reflect <jet_sqla.bridge.Bridge.reflect>`, and the tables of ``schemas``.

    A URL gets an engine of its own (pre-pinged, with jet_sqla's pool options); an
    async engine is answered with a sync engine on the matching driver.
    """
    engine: sa.Engine
    if isinstance(database_url, str):
        engine = sa.create_engine(sync_url(database_url), pool_pre_ping=True, **pool_options(sync_url(database_url)))
    elif isinstance(database_url, sa.Engine) and not is_async_engine(database_url):
        engine = database_url
    else:
        engine = sync_engine_for(database_url)
    metadata = sa.MetaData()
    for schema in schemas:
        metadata.reflect(engine, schema=schema)
    return engine, metadata
