"""Async engines: jet_sqla runs its actions on a sync engine opened on the same database.

Actions are plain functions run in a thread, so an ``AsyncEngine`` (or an
``async+driver://`` URL) is answered with a sync engine on the same database,
through the sync driver that matches the async one. This module needs no
asyncio package: it only reads URLs.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

import sqlalchemy as sa

__all__ = ['SYNC_DRIVERS', 'MissingDriver', 'is_async_engine', 'is_async_url', 'sync_engine_for', 'sync_url']

log = logging.getLogger('jet_sqla')

#: Async driver -> (its sync counterpart, the module that driver imports, the extra that installs it).
SYNC_DRIVERS: dict[str, tuple[str, str, str | None]] = {
    'asyncpg': ('psycopg', 'psycopg', 'postgres'),
    'psycopg_async': ('psycopg', 'psycopg', 'postgres'),
    'aiosqlite': ('pysqlite', 'sqlite3', None),
    'aiomysql': ('pymysql', 'pymysql', 'mysql'),
    'asyncmy': ('pymysql', 'pymysql', 'mysql'),
}


class MissingDriver(ImportError):
    """The sync driver matching an async one is not installed."""


def is_async_url(url: str | sa.URL) -> bool:
    """Whether ``url`` names one of the async drivers of :data:`SYNC_DRIVERS`."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return False
    return parsed.get_driver_name() in SYNC_DRIVERS


def is_async_engine(engine: Any) -> bool:
    """An ``AsyncEngine``, or the ``.sync_engine`` of one (whose dialect still needs an event loop)."""
    if hasattr(engine, 'sync_engine') and isinstance(engine.sync_engine, sa.Engine):
        return True
    return isinstance(engine, sa.Engine) and bool(getattr(engine.dialect, 'is_async', False))


def sync_url(url: str | sa.URL) -> sa.URL:
    """The same database, through the sync driver matching ``url``'s async one; other URLs unchanged.

    Raises:
        MissingDriver: that sync driver is not installed; the message names the extra to install.
    """
    parsed = sa.make_url(url)
    async_driver = parsed.get_driver_name()
    if async_driver not in SYNC_DRIVERS:
        return parsed
    driver, module, extra = SYNC_DRIVERS[async_driver]
    if importlib.util.find_spec(module) is None:
        install = f'pip install "jet-sqla[{extra}]"' if extra else f'install {module}'
        raise MissingDriver(
            f'jet_sqla runs actions on a sync engine; {parsed.get_backend_name()}+{async_driver} needs the '
            f'{driver} driver, which is not installed: {install}'
        )
    return parsed.set(drivername=f'{parsed.get_backend_name()}+{driver}')


def sync_engine_for(engine: Any, **kwargs: Any) -> sa.Engine:
    """A sync engine on the database of an ``AsyncEngine`` (or of its ``.sync_engine``).

    Raises:
        MissingDriver: the matching sync driver is not installed.
    """
    url = engine.url
    synced = sync_url(url)
    if synced.get_backend_name() == 'sqlite' and synced.database in (None, '', ':memory:'):
        raise ValueError('an in-memory SQLite database cannot be shared with a second engine; use a file')
    log.info('async engine %s: jet_sqla runs its actions on a sync engine through %s',
             url.render_as_string(hide_password=True), synced.get_driver_name())
    kwargs.setdefault('pool_pre_ping', True)
    return sa.create_engine(synced, **kwargs)
