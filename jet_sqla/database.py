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
from sqlalchemy.engine.base import OptionEngine
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

__all__ = [
    'DEFAULT_POOL_TIMEOUT',
    'apply_timeout',
    'install',
    'is_disconnect',
    'is_lock_wait_timeout',
    'is_pattern_too_complex',
    'is_pool_timeout',
    'is_retryable',
    'is_timeout',
    'is_unavailable',
    'limit_reads',
    'pool_options',
    'read_engine',
    'refused_column',
]

log = logging.getLogger(__name__)

_RESET_KEY = 'jet_sqla_reset_timeout'
#: Where a read engine's connection records the statement timeout it was opened with.
_BOUND_KEY = 'jet_sqla_read_timeout'
#: The execution option that bounds each statement of a read (options, listings), in seconds.
READ_TIMEOUT_OPTION = 'jet_sqla_read_timeout'

# SQLSTATEs (PostgreSQL) and error numbers (MySQL/MariaDB).
_PG_RETRYABLE = frozenset({'40001', '40P01'})  # serialization failure, deadlock
_PG_TIMEOUT = frozenset({'57014'})  # query_canceled (statement_timeout)
_MYSQL_RETRYABLE = frozenset({1213})  # deadlock found when trying to get lock
_MYSQL_TIMEOUT = frozenset({1969, 3024})  # MariaDB max_statement_time, MySQL max_execution_time
_PG_LOCK_NOT_AVAILABLE = frozenset({'55P03'})  # lock_timeout, NOWAIT
_MYSQL_LOCK_WAIT_TIMEOUT = frozenset({1205, 3572})  # innodb_lock_wait_timeout, NOWAIT


def install(engine: sa.Engine) -> None:
    """Undo per-transaction settings when a connection goes back to the pool.

    Idempotent: installing twice on one engine adds one listener.
    """
    if event.contains(engine, 'checkin', _reset_on_checkin):
        return
    event.listen(engine, 'checkin', _reset_on_checkin)
    if engine.dialect.name in ('mysql', 'mariadb'):
        event.listen(engine, 'before_cursor_execute', _bound_mysql_statement, retval=True)


def read_engine(engine: sa.Engine, seconds: float | None) -> sa.Engine:
    """The engine options and listings read through: on PostgreSQL, a pool of its own whose
    connections carry ``statement_timeout`` from the moment they open.

    PERF: a ``set_config`` per read cost one more round trip, 1.4 times the time
    of a cheap options page; set once per connection, the bound is free. It
    needs a pool of its own: a session setting left on a shared connection
    would bound the next action, or the application's own queries, too. The
    setting is the session's, so it holds whether or not a read opens a
    transaction. The read engine shares the engine's dialect, events and
    statement cache; only its pool (same size and settings) is new. Other databases need
    no such pool (see :func:`limit_reads`).
    """
    if seconds is None or engine.dialect.name != 'postgresql':
        return engine
    reads = _ReadEngine(engine, engine.pool.recreate())
    value = f'{max(1, int(seconds * 1000))}ms'

    def bound(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", (value,))
        finally:
            cursor.close()
        if not getattr(dbapi_connection, 'autocommit', False):
            dbapi_connection.commit()
        connection_record.info[_BOUND_KEY] = float(seconds)

    event.listen(reads.pool, 'connect', bound)
    return reads


class _ReadEngine(OptionEngine):
    """An engine that shares another's dialect, events and caches, with a pool of its own."""

    def __init__(self, proxied: sa.Engine, pool: Pool) -> None:
        super().__init__(proxied, {})
        self.__dict__['_own_pool'] = pool

    @property
    def pool(self) -> Pool:
        own: Pool = self.__dict__['_own_pool']
        return own

    @pool.setter
    def pool(self, pool: Pool) -> None:  # Engine.dispose() sets a fresh one
        self.__dict__['_own_pool'] = pool


def limit_reads(connection: sa.Connection, seconds: float | None) -> None:
    """Bound every statement a read runs on ``connection`` to ``seconds``; past it the database stops it.

    Reads (options, listings) may be sent by read-only users with any search
    term, so none may hold a backend for long. The bound holds whether or not
    the read runs inside a transaction, and costs at most one round trip:

    - PostgreSQL: nothing, on a connection of :func:`read_engine`, which is
      bound from the moment it opened. On any other connection,
      ``set_config('statement_timeout', …, true)``, local to the transaction,
      when the driver runs one; on an autocommit connection (a read that opens
      no transaction) the session's setting, reset when the connection goes
      back to the pool, since a transaction-local one would end with the very
      statement that set it.
    - MariaDB: each statement is sent as ``SET STATEMENT max_statement_time=…
      FOR …``, which needs no round trip and no reset at all; MySQL gets the
      ``MAX_EXECUTION_TIME`` hint on its SELECTs.
    - SQLite: a progress handler interrupts the statement past the deadline,
      removed when the connection goes back to the pool.
    """
    if seconds is None:
        return
    dialect = connection.dialect.name
    if dialect in ('mysql', 'mariadb'):
        connection.execution_options(**{READ_TIMEOUT_OPTION: float(seconds)})
        return
    if dialect == 'postgresql':
        if connection.connection.info.get(_BOUND_KEY) == float(seconds):
            return  # a connection of read_engine(): bound since it opened
        driver_connection = connection.connection.driver_connection
        local = not getattr(driver_connection, 'autocommit', False)
        connection.execute(sa.text("SELECT set_config('statement_timeout', :value, :local)"),
                           {'value': f'{max(1, int(seconds * 1000))}ms', 'local': local})
        if not local:
            connection.connection.info[_RESET_KEY] = dialect
        return
    if dialect == 'sqlite':
        deadline = time.monotonic() + seconds
        driver = connection.connection.driver_connection
        # 10,000 VM instructions between checks: well under a millisecond, and cheap on short reads.
        driver.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)  # type: ignore[union-attr]
        connection.connection.info[_RESET_KEY] = dialect


def _bound_mysql_statement(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                           executemany: bool) -> tuple[str, Any]:
    seconds = context.execution_options.get(READ_TIMEOUT_OPTION) if context is not None else None
    if seconds is None:
        return statement, parameters
    if getattr(conn.dialect, 'is_mariadb', False):
        return f'SET STATEMENT max_statement_time={float(seconds)!r} FOR {statement}', parameters
    stripped = statement.lstrip()
    if stripped[:6].upper() == 'SELECT':
        return f'SELECT /*+ MAX_EXECUTION_TIME({max(1, int(seconds * 1000))}) */{stripped[6:]}', parameters
    return statement, parameters


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
        if dialect == 'postgresql':
            # An autocommit read's session setting; the pool has already ended any transaction.
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute('RESET statement_timeout')
            finally:
                cursor.close()
            if not getattr(dbapi_connection, 'autocommit', False):
                dbapi_connection.commit()
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


def is_lock_wait_timeout(error: BaseException) -> bool:
    """A row lock was not granted within the database's lock wait timeout; the statement did nothing."""
    if not isinstance(error, exc.DBAPIError):
        return False
    sqlstate, number = _codes(error)
    return sqlstate in _PG_LOCK_NOT_AVAILABLE or number in _MYSQL_LOCK_WAIT_TIMEOUT


def is_pool_timeout(error: BaseException) -> bool:
    """No pooled connection came free within the pool's timeout: the server is busy, the database may be fine."""
    return isinstance(error, exc.TimeoutError)


def is_pattern_too_complex(error: BaseException) -> bool:
    """SQLite refused a LIKE pattern as too long or complex: the search's fault, not the database's."""
    return isinstance(error, exc.OperationalError) and 'pattern too complex' in str(error.orig)


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


#: Seconds a request waits for a pooled connection in engines jet_sqla builds: well under a
#: client's timeout (Jet Admin waits about 30 s), so a busy server says so instead of timing out.
DEFAULT_POOL_TIMEOUT = 5.0


def pool_options(database_url: str | sa.URL) -> dict[str, Any]:
    """The pool settings of the engines jet_sqla builds: a pool timeout shorter than a client's."""
    url = sa.make_url(database_url)
    # An in-memory SQLite database has a SingletonThreadPool, which has no timeout to set.
    if url.get_backend_name() == 'sqlite' and url.database in (None, '', ':memory:'):
        return {}
    return {'pool_timeout': DEFAULT_POOL_TIMEOUT}
