"""Create jet_sqla_job and jet_sqla_job_chunk: the state of background actions.

Revision ID: jet_sqla_0003
Revises: jet_sqla_0002
Create Date: 2026-12-01

This is a frozen copy of ``jet_sqla.jobs.tables`` as of this revision; a test
checks that the two describe the same tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = 'jet_sqla_0003'
down_revision = 'jet_sqla_0002'
branch_labels = None
depends_on = None

_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')


def upgrade() -> None:
    op.create_table(
        'jet_sqla_job',
        sa.Column('id', sa.String(32), nullable=False),
        sa.Column('action', sa.String(255), nullable=False),
        sa.Column('collection', sa.String(255)),
        sa.Column('params', _LONG_TEXT, nullable=False),
        sa.Column('actor', sa.Text),
        sa.Column('total', sa.BigInteger, nullable=False),
        sa.Column('chunks', sa.Integer, nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('published_at', sa.DateTime(timezone=True)),
        sa.Column('started_at', sa.DateTime(timezone=True)),
        sa.Column('cancelled_at', sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint('id', name='pk_jet_sqla_job'),
    )
    op.create_index('ix_jet_sqla_job_created_at', 'jet_sqla_job', ['created_at'])
    op.create_table(
        'jet_sqla_job_chunk',
        sa.Column('job_id', sa.String(32), nullable=False),
        sa.Column('seq', sa.Integer, nullable=False, autoincrement=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('size', sa.Integer, nullable=False),
        sa.Column('first_id', sa.Text),
        sa.Column('last_id', sa.Text),
        sa.Column('ids', _LONG_TEXT),
        sa.Column('done', sa.Integer),
        sa.Column('error', sa.Text),
        sa.Column('started_at', sa.DateTime(timezone=True)),
        sa.Column('finished_at', sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint('job_id', 'seq', name='pk_jet_sqla_job_chunk'),
    )


def downgrade() -> None:
    op.drop_table('jet_sqla_job_chunk')
    op.drop_index('ix_jet_sqla_job_created_at', table_name='jet_sqla_job')
    op.drop_table('jet_sqla_job')
