"""Create jet_sqla_action_log: the audit log and the idempotency keys.

Revision ID: jet_sqla_0001
Revises:
Create Date: 2026-11-23

This is a frozen copy of ``jet_sqla.audit.action_log`` as of this revision;
a test checks that the two describe the same table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = 'jet_sqla_0001'
down_revision = None
branch_labels = ('jet_sqla',)
depends_on = None

_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')


def upgrade() -> None:
    op.create_table(
        'jet_sqla_action_log',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('action', sa.String(255), nullable=False),
        sa.Column('collection', sa.String(255)),
        sa.Column('ids', _LONG_TEXT),
        sa.Column('params', _LONG_TEXT),
        sa.Column('actor', sa.Text),
        sa.Column('outcome', sa.String(20), nullable=False),
        sa.Column('error', sa.Text),
        sa.Column('duration_ms', sa.Float),
        sa.Column('idempotency_key', sa.String(255)),
        sa.Column('request_hash', sa.String(64)),
        sa.Column('response', _LONG_TEXT),
        sa.PrimaryKeyConstraint('id', name='pk_jet_sqla_action_log'),
        sa.UniqueConstraint('idempotency_key', name='uq_jet_sqla_action_log_idempotency_key'),
    )
    op.create_index('ix_jet_sqla_action_log_created_at', 'jet_sqla_action_log', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_jet_sqla_action_log_created_at', table_name='jet_sqla_action_log')
    op.drop_table('jet_sqla_action_log')
