"""The action log and idempotent runs, in jet_sqla's own table ``jet_sqla_action_log``.

A successful run's row is written in the action's own transaction, so either
both persist or neither does. A failed run's row is written after the
rollback, in a transaction of its own. A run with an idempotency key claims
its key first, inside the action's transaction: a concurrent run with the same
key waits on the unique index, then finds the stored response.

With change history on, a success's row also holds the run's changes
(:mod:`jet_sqla.changes`), in the same insert; an undo's row names the run it
reverts in ``undo_of``, which is unique.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Session

from . import encoding

__all__ = ['AuditEntry', 'AuditLog', 'KeyClaimed', 'action_log', 'fingerprint', 'is_secret', 'metadata', 'redact']

log = logging.getLogger(__name__)

#: jet_sqla's own tables; the Alembic scripts in ``jet_sqla.migrations`` create them.
#: Constraint names are fixed by the convention, so that a later migration can name them.
metadata = sa.MetaData(naming_convention={
    'ix': 'ix_%(table_name)s_%(column_0_name)s',
    'uq': 'uq_%(table_name)s_%(column_0_name)s',
    'pk': 'pk_%(table_name)s',
})

# MySQL's TEXT holds 64 KiB; the ids and params of one bulk request may be larger.
_LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')

action_log = sa.Table(
    'jet_sqla_action_log',
    metadata,
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), primary_key=True, autoincrement=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column('action', sa.String(255), nullable=False),
    sa.Column('collection', sa.String(255)),
    sa.Column('ids', _LONG_TEXT),
    sa.Column('params', _LONG_TEXT),
    sa.Column('actor', sa.Text),
    sa.Column('outcome', sa.String(20), nullable=False),
    sa.Column('error', sa.Text),
    sa.Column('duration_ms', sa.Float),
    sa.Column('idempotency_key', sa.String(255), unique=True),
    sa.Column('request_hash', sa.String(64)),
    sa.Column('response', _LONG_TEXT),
    # Change history (jet_sqla_0004): what a successful run changed, and the run an undo reverts.
    sa.Column('changes', _LONG_TEXT),
    # Unique: a run is undone at most once, even by two undos racing each other.
    sa.Column('undo_of', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), unique=True),
)

REDACTED = '[redacted]'
# Errs on the side of hiding: a harmless key that looks secret is redacted too.
# 'author' and 'authority' are spared; 'authorization' is not.
_SECRET_KEY = re.compile(
    r'pass|secret|token|api.?key|private|auth(?!or(?!iz))|credential|card|cvv|ssn|iban', re.IGNORECASE
)


def is_secret(key: str) -> bool:
    """Whether a key (or a column name) looks like it holds a secret."""
    return _SECRET_KEY.search(key) is not None


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and _SECRET_KEY.search(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value


#: Request keys the fingerprint leaves out: the coerced ids stand for the raw ones, and the key is not the request.
_NOT_FINGERPRINTED = frozenset({'ids', 'id', 'idempotency_key'})


def fingerprint(action: str, collection: str | None, ids: Sequence[Any], params: Mapping[str, Any]) -> str:
    """The hash that tells a repeated request from a different one under the same key.

    ``"1,2"`` and ``[1, 2]`` are the same ids, and a key sent in the header or
    in the params is the same key: a retry that spells them differently is a repeat.
    """
    form = {key: value for key, value in params.items() if key not in _NOT_FINGERPRINTED}
    canonical = encoding.dumps_canonical([action, collection, [str(value) for value in ids], form])
    return hashlib.sha256(canonical).hexdigest()


class KeyClaimed(Exception):
    """Another run holds, or has completed, this idempotency key."""


@dataclass
class AuditEntry:
    """One execute_action, as logged."""

    action: str
    collection: str | None
    ids: Sequence[Any]
    params: Mapping[str, Any]
    actor: Mapping[str, Any] | None
    idempotency_key: str | None = None
    request_hash: str | None = None
    outcome: str = 'running'
    error: str | None = None
    duration_ms: float | None = None
    response: bytes | None = None
    #: The run's change history, already encoded; ``None`` when not kept.
    changes: bytes | None = None
    #: The log id of the run an undo reverts.
    undo_of: int | None = None
    #: This run's own log id, once its row is written.
    log_id: int | None = None
    created_at: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def row(self) -> dict[str, Any]:
        return {
            'created_at': self.created_at,
            'action': self.action,
            'collection': self.collection,
            'ids': encoding.dumps([str(value) for value in self.ids]).decode(),
            'params': encoding.dumps(redact(self.params)).decode(),
            'actor': encoding.dumps(self.actor).decode() if self.actor is not None else None,
            'outcome': self.outcome,
            'error': self.error,
            'duration_ms': self.duration_ms,
            'idempotency_key': self.idempotency_key,
            'request_hash': self.request_hash,
            'response': self.response.decode() if self.response is not None else None,
            'changes': self.changes.decode() if self.changes is not None else None,
            'undo_of': self.undo_of,
        }


class AuditLog:
    """Writes :data:`action_log` rows through the application's engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def check_ready(self) -> None:
        """Raises RuntimeError, saying what to run, when the table does not exist."""
        if not sa.inspect(self.engine).has_table(action_log.name):
            raise RuntimeError(
                f'audit=True needs the table {action_log.name}, which does not exist in '
                f'{self.engine.url.render_as_string(hide_password=True)}; '
                'run `jet-sqla db upgrade --database-url URL` first'
            )

    def claim(self, session: Session, entry: AuditEntry) -> None:
        """Insert ``entry`` as running, holding its key until the transaction ends.

        Raises:
            KeyClaimed: another run has committed, or holds, the same key.
        """
        try:
            result = session.execute(action_log.insert().values(entry.row()))
        except exc.IntegrityError:
            raise KeyClaimed(entry.idempotency_key) from None
        entry.log_id = _inserted_id(result)

    def stored(self, key: str) -> tuple[str | None, bytes | None, int] | None:
        """``(request_hash, response, log id)`` committed under ``key``, or ``None``."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(action_log.c.request_hash, action_log.c.response, action_log.c.id).where(
                    action_log.c.idempotency_key == key
                )
            ).first()
        if row is None:
            return None
        return row.request_hash, row.response.encode() if row.response is not None else None, int(row.id)

    def record_success(self, session: Session, entry: AuditEntry) -> None:
        """Log a success inside the action's transaction; completes a claimed row."""
        values = entry.row()
        if entry.idempotency_key is not None:
            session.execute(
                action_log.update().where(action_log.c.idempotency_key == entry.idempotency_key).values(values)
            )
        else:
            entry.log_id = _inserted_id(session.execute(action_log.insert().values(values)))

    def record_failure(self, entry: AuditEntry) -> None:
        """Log a failure (or a dry run) in a transaction of its own; never raises."""
        values = entry.row()
        values['idempotency_key'] = None  # a failed run does not use up its key
        values['undo_of'] = None  # nor does a failed undo mark its run as undone
        try:
            with self.engine.begin() as connection:
                entry.log_id = _inserted_id(connection.execute(action_log.insert().values(values)))
        except exc.SQLAlchemyError:
            log.exception('could not write the audit row of a failed %r run', entry.action)


def _inserted_id(result: sa.Result[Any]) -> int | None:
    key = result.inserted_primary_key  # type: ignore[attr-defined]
    return int(key[0]) if key is not None and key[0] is not None else None
