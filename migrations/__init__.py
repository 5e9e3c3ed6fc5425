"""jet_sqla's own tables (``jet_sqla_*``), under Alembic.

The scripts ship inside the installed package, so they work from a wheel as
well as from a checkout. Run them on their own, with their own version table::

    jet-sqla db upgrade --database-url URL

or add them to your own Alembic tree: list :data:`VERSIONS` in its
``version_locations`` and run ``alembic upgrade heads``. Their branch label is
:data:`BRANCH`.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ['BRANCH', 'VERSIONS', 'VERSION_TABLE', 'config', 'current', 'downgrade', 'heads', 'upgrade']

#: The branch label of every jet_sqla revision: ``alembic upgrade jet_sqla@head``.
BRANCH = 'jet_sqla'
#: Where a standalone run records its revision; a user's own tree keeps its own table.
VERSION_TABLE = 'jet_sqla_alembic_version'
#: The ``version_locations`` entry that adds jet_sqla's revisions to another tree.
VERSIONS = 'jet_sqla.migrations:versions'


def script_location() -> str:
    """The directory of ``env.py`` and ``versions/``, wherever the package is installed."""
    return str(importlib.resources.files(__name__))


def config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for jet_sqla's scripts, running on ``connection``."""
    alembic_config = Config()
    alembic_config.set_main_option('script_location', script_location())
    alembic_config.attributes['connection'] = connection
    return alembic_config


@contextmanager
def _connected(engine: sa.Engine) -> Iterator[Config]:
    # One transaction for the whole run: where DDL is transactional, a failed step leaves nothing behind.
    with engine.begin() as connection:
        yield config(connection)


def upgrade(engine: sa.Engine, revision: str = 'heads') -> None:
    """Create or update jet_sqla's tables up to ``revision``."""
    with _connected(engine) as alembic_config:
        command.upgrade(alembic_config, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    """Undo jet_sqla's migrations down to ``revision`` (``base`` drops every jet_sqla table)."""
    with _connected(engine) as alembic_config:
        command.downgrade(alembic_config, revision)


def current(engine: sa.Engine) -> tuple[str, ...]:
    """The revisions the database is at; empty when jet_sqla's tables were never created."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={'version_table': VERSION_TABLE})
        return context.get_current_heads()


def heads() -> tuple[str, ...]:
    """The newest revisions the installed package ships."""
    return tuple(ScriptDirectory.from_config(config()).get_heads())
