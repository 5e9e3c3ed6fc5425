"""The state of background jobs, in jet_sqla's own tables ``jet_sqla_job`` and ``jet_sqla_job_chunk``.

A job row is written once, when the job is accepted, and after that only
gets its ``published_at``, ``started_at`` and ``cancelled_at`` marks. Progress
lives in the chunk rows: a chunk's ``done`` mark commits in the same
transaction as the chunk's writes, so what a client reads is never ahead of
what has committed, and there is no hot counter row for workers to fight over.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from ..audit import metadata

__all__ = ['CANCELLED', 'DONE', 'FAILED', 'QUEUED', 'chunk_table', 'job_table', 'metadata']

# MySQL's TEXT holds 64 KiB; a chunk of long string ids, or a big form, may be larger.
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')

#: A chunk's states. A chunk goes from queued to done or failed exactly once.
QUEUED = 'queued'
DONE = 'done'
FAILED = 'failed'
#: A queued chunk found its job cancelled when it was delivered.
CANCELLED = 'cancelled'

job_table = sa.Table(
    'jet_sqla_job',
    metadata,
    sa.Column('id', sa.String(32), primary_key=True),
    sa.Column('action', sa.String(255), nullable=False),
    sa.Column('collection', sa.String(255)),
    sa.Column('params', _LONG_TEXT, nullable=False),
    sa.Column('actor', sa.Text),
    sa.Column('total', sa.BigInteger, nullable=False),
    sa.Column('chunks', sa.Integer, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column('published_at', sa.DateTime(timezone=True)),
    sa.Column('started_at', sa.DateTime(timezone=True)),
    sa.Column('cancelled_at', sa.DateTime(timezone=True)),
)

chunk_table = sa.Table(
    'jet_sqla_job_chunk',
    metadata,
    sa.Column('job_id', sa.String(32), primary_key=True),
    sa.Column('seq', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('status', sa.String(16), nullable=False),
    sa.Column('size', sa.Integer, nullable=False),
    sa.Column('first_id', sa.Text),
    sa.Column('last_id', sa.Text),
    sa.Column('ids', _LONG_TEXT),
    sa.Column('done', sa.Integer),
    sa.Column('error', sa.Text),
    sa.Column('started_at', sa.DateTime(timezone=True)),
    sa.Column('finished_at', sa.DateTime(timezone=True)),
)
