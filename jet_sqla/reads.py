"""Reads that need no transaction: foreign-key option pages.

One ``SELECT`` sees a consistent snapshot by itself; wrapping it in a
transaction only adds round trips. On PostgreSQL, psycopg would send ``BEGIN``
before the ``SELECT`` and the pool a ``ROLLBACK`` after it: three round trips
for one query. In autocommit mode the ``SELECT`` goes alone. psycopg switches
autocommit on and off on the client, without a round trip, so this costs
nothing when the connection goes back to the pool.

On MariaDB/MySQL no ``BEGIN`` is sent (the server starts the transaction with
the statement), and switching autocommit would itself take a round trip each
way; on SQLite there is no server. Both read on a plain connection.

Statement timeouts on these reads: there is no transaction, so a timeout
cannot be ``SET LOCAL`` (PostgreSQL ignores it outside a transaction, with a
warning). Set it once per pooled connection instead, in the pool's ``connect``
event (``SET statement_timeout`` / ``SET SESSION max_statement_time``), on an
engine whose connections serve only such reads; or pass it on the statement
(MariaDB's ``SET STATEMENT max_statement_time=… FOR SELECT …``).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ['read_connection']

#: Databases whose driver switches autocommit without a round trip.
_AUTOCOMMIT_READS = frozenset({'postgresql'})


def read_connection(engine: sa.Engine) -> sa.Connection:
    """A connection for a read that needs no transaction: in autocommit mode where that is free.

    Use it in a ``with`` block, which closes it. PERF: the connection is its own
    context manager; a generator-based one around it cost 0.6 µs per read.
    """
    connection = engine.connect()
    if engine.dialect.name in _AUTOCOMMIT_READS:
        try:
            # PERF: no BEGIN before the SELECT, no ROLLBACK after it; reset when the connection closes.
            connection.execution_options(isolation_level='AUTOCOMMIT')
        except BaseException:
            connection.close()
            raise
    return connection
