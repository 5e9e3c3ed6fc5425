"""Idempotency keys compare byte for byte, and belong to the actor that used them first.

Revision ID: jet_sqla_0002
Revises: jet_sqla_0001
Create Date: 2026-12-01

On MariaDB and MySQL the key column took the table's case- and
accent-insensitive collation, so ``Key-x``, ``KEY-x`` and ``kéy-x`` were one
key. It becomes ``utf8mb4_bin``. PostgreSQL's deterministic collations and
SQLite's ``BINARY`` already compare bytes, so only the new ``key_owner``
column is added there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = 'jet_sqla_0002'
down_revision = 'jet_sqla_0001'
branch_labels = None
depends_on = None

_TABLE = 'jet_sqla_action_log'


def upgrade() -> None:
    if op.get_bind().dialect.name in ('mysql', 'mariadb'):
        op.alter_column(_TABLE, 'idempotency_key', existing_nullable=True,
                        type_=mysql.VARCHAR(255, charset='utf8mb4', collation='utf8mb4_bin'))
    with op.batch_alter_table(_TABLE) as batch:
        batch.add_column(sa.Column('key_owner', sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.drop_column('key_owner')
    if op.get_bind().dialect.name in ('mysql', 'mariadb'):
        op.alter_column(_TABLE, 'idempotency_key', existing_nullable=True, type_=sa.String(255))
