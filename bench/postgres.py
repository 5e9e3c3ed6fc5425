"""A private database for one benchmark run (PostgreSQL or MariaDB): ``bench_<pid>``, created, then dropped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def private_database(server_url: str) -> Iterator[sa.Engine]:
    """An engine on a new, empty database ``bench_<pid>`` of ``server_url``'s server; dropped on exit.

    Raises:
        sqlalchemy.exc.OperationalError: the server does not answer.
    """
    name = f'bench_{os.getpid()}'
    admin = sa.create_engine(server_url, isolation_level='AUTOCOMMIT', connect_args={'connect_timeout': 5})
    quoted = admin.dialect.identifier_preparer.quote(name)
    force = ' WITH (FORCE)' if admin.dialect.name == 'postgresql' else ''
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS {quoted}{force}'))
            connection.execute(sa.text(f'CREATE DATABASE {quoted}'))
        engine = sa.create_engine(sa.make_url(server_url).set(database=name))
        try:
            yield engine
        finally:
            engine.dispose()
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS {quoted}{force}'))
    finally:
        admin.dispose()
