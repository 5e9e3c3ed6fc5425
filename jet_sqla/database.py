"""What differs between SQLite, PostgreSQL and MariaDB/MySQL.

Per-transaction statement timeouts, and the reading of driver errors: which
ones mean "retry", "timed out" or "the database is gone".
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.orm import Session

__all__ = ['apply_timeout', 'install', 'is_disconnect', 'is_retryable', 'is_timeout', 'is_unavailable',
           'refused_column']

log = logging.getLogger(__name__)

_RESET_KEY = 'jet_sqla_reset_timeout'

# SQLSTATEs (PostgreSQL) and error numbers (MySQL/MariaDB).
_PG_RETRYABLE = frozenset({'40001', '40P01'})  # serialization failure, deadlock
_PG_TIMEOUT = frozenset({'57014'})  # query_canceled (statement_timeout)
_MYSQL_RETRYABLE = frozenset({1213})  # deadlock found when trying to get lock
_MYSQL_TIMEOUT = frozenset({1969, 3024})  # MariaDB max_statement_time, MySQL max_execution_time


def install(engine: sa.Engine) -> None:
    """Undo per-transaction settings when a connection goes back to the pool.

    Idempotent: installing twice on one engine adds one listener.
    """
    if event.contains(engine, 'checkin', _reset_on_checkin):
        return
    event.listen(engine, 'checkin', _reset_on_checkin)


def apply_timeout(session: Session, seconds: float) -> None:
    """Bound every statement of the session's current transaction to ``seconds``.

    PostgreSQL uses ``statement_timeout`` for this transaction only; MariaDB
    ``max_statement_time`` and MySQL ``max_execution_time`` for the connection,
    reset when it returns to the pool; SQLite a progress handler that
    interrupts the running statement once the deadline has passed.
    """
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == 'postgresql':
        connection.execute(
            sa.text("SELECT set_config('statement_timeout', :value, true)"),
            {'value': f'{max(1, int(seconds * 1000))}ms'},
        )
        return
    record_info = connection.connection.info  # survives until the pool's checkin
    if dialect in ('mysql', 'mariadb'):
        if getattr(connection.dialect, 'is_mariadb', False):
            connection.execute(sa.text('SET SESSION max_statement_time = :value'), {'value': float(seconds)})
        else:
            connection.execute(sa.text('SET SESSION max_execution_time = :value'), {'value': int(seconds * 1000)})
        record_info[_RESET_KEY] = dialect
    elif dialect == 'sqlite':
        deadline = time.monotonic() + seconds
        driver_connection = connection.connection.driver_connection
        driver_connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)  # type: ignore[union-attr]
        record_info[_RESET_KEY] = dialect
    else:
        log.warning('timeout= is not supported on %s; the action runs without it', dialect)


def _reset_on_checkin(dbapi_connection: Any, connection_record: Any) -> None:
    dialect = connection_record.info.pop(_RESET_KEY, None)
    if dialect is None or dbapi_connection is None:
        return
    try:
        if dialect == 'sqlite':
            dbapi_connection.set_progress_handler(None, 0)
            return
        cursor = dbapi_connection.cursor()
        try:
            # Whichever variable this server has; the other one errors and is ignored.
            for statement in ('SET SESSION max_statement_time = 0', 'SET SESSION max_execution_time = 0'):
                try:
                    cursor.execute(statement)
                    break
                except Exception:  # noqa: BLE001 - the variable of the other server flavour
                    continue
        finally:
            cursor.close()
    except Exception:  # noqa: BLE001 - a dead connection is discarded by the pool anyway
        log.debug('could not reset a statement timeout on checkin', exc_info=True)


def _codes(error: BaseException) -> tuple[str | None, int | None]:
    original = getattr(error, 'orig', None)
    sqlstate = getattr(original, 'sqlstate', None) or getattr(original, 'pgcode', None)
    number = None
    args = getattr(original, 'args', ())
    if args and isinstance(args[0], int):
        number = args[0]
    return sqlstate, number


def is_retryable(error: BaseException) -> bool:
    """A deadlock, a serialization failure, or a busy SQLite file: safe to run again."""
    if not isinstance(error, exc.DBAPIError):
        return False
    sqlstate, number = _codes(error)
    if sqlstate in _PG_RETRYABLE or number in _MYSQL_RETRYABLE:
        return True
    return isinstance(error, exc.OperationalError) and 'database is locked' in str(error.orig)


def is_timeout(error: BaseException) -> bool:
    """The statement was cancelled by :func:`apply_timeout`."""
    if not isinstance(error, exc.DBAPIError):
        return False
    sqlstate, number = _codes(error)
    if sqlstate in _PG_TIMEOUT or number in _MYSQL_TIMEOUT:
        return True
    return isinstance(error, exc.OperationalError) and str(error.orig) == 'interrupted'


def is_disconnect(error: BaseException) -> bool:
    """The connection broke under the statement: its outcome on the server is unknown."""
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


def is_unavailable(error: BaseException) -> bool:
    """The database cannot be reached, or dropped the connection."""
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, (exc.OperationalError, exc.InterfaceError))
    return isinstance(error, exc.DisconnectionError)


# MySQL/MariaDB name the column in the message: "Data too long for column 'name' at row 1".
_MYSQL_COLUMN = re.compile(r"for column [`'\"]?([^`'\"]+)[`'\"]? at row")


def refused_column(error: BaseException) -> str | None:
    """The column a refused value was meant for, when the driver says (``table.column`` if it names both)."""
    original = getattr(error, 'orig', None)
    diag = getattr(original, 'diag', None)  # psycopg: set when PostgreSQL reports the column
    column = getattr(diag, 'column_name', None)
    if column:
        table = getattr(diag, 'table_name', None)
        return f'{table}.{column}' if table else str(column)
    match = _MYSQL_COLUMN.search(str(original)) if original is not None else None
    return match.group(1) if match else None
