"""Alembic's entry point for jet_sqla's own tables.

``jet-sqla db`` hands it a live connection in ``config.attributes['connection']``;
a plain ``alembic`` run may give ``sqlalchemy.url`` instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from jet_sqla import audit, migrations
from jet_sqla.jobs import tables as _job_tables  # noqa: F401 - puts the job tables on audit.metadata


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option('sqlalchemy.url'),
        target_metadata=audit.metadata,
        version_table=migrations.VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=audit.metadata, version_table=migrations.VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif context.config.attributes.get('connection') is not None:
    run_online(context.config.attributes['connection'])
else:
    engine = sa.create_engine(context.config.get_main_option('sqlalchemy.url') or '', poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        run_online(connection)
