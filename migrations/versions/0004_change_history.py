"""Add change history to jet_sqla_action_log: the changes a run made, and the run an undo reverts.

Revision ID: jet_sqla_0004
Revises: jet_sqla_0003
Create Date: 2026-12-01

A frozen copy of the two columns ``jet_sqla.audit.action_log`` gained in this
revision; a test checks that the migrated table matches it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = 'jet_sqla_0004'
down_revision = 'jet_sqla_0003'
branch_labels = None
depends_on = None

_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')
_TABLE = 'jet_sqla_action_log'


def upgrade() -> None:
    # batch: SQLite cannot add a unique constraint to an existing table in place.
    with op.batch_alter_table(_TABLE) as batch:
        batch.add_column(sa.Column('changes', _LONG_TEXT))
        batch.add_column(sa.Column('undo_of', sa.BigInteger().with_variant(sa.Integer(), 'sqlite')))
        batch.create_unique_constraint('uq_jet_sqla_action_log_undo_of', ['undo_of'])


def downgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_constraint('uq_jet_sqla_action_log_undo_of', type_='unique')
        batch.drop_column('undo_of')
        batch.drop_column('changes')
