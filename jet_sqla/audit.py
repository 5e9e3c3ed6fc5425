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
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Session

from . import encoding

__all__ = [
    'MAX_TEXT',
    'SHARED_TOKEN',
    'AuditEntry',
    'AuditLog',
    'KeyClaimed',
    'action_log',
    'bounded',
    'fingerprint',
    'is_secret',
    'key_owner',
    'metadata',
    'redact',
]

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
# Keys compare byte for byte: MariaDB's default collations would make 'Key-x', 'KEY-x' and 'kéy-x'
# one key, and silently not run three of four distinct requests. PostgreSQL's deterministic
# collations and SQLite's BINARY already compare bytes. (Migration jet_sqla_0002.)
_KEY = sa.String(255).with_variant(mysql.VARCHAR(255, charset='utf8mb4', collation='utf8mb4_bin'), 'mysql', 'mariadb')

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
    sa.Column('idempotency_key', _KEY, unique=True),
    sa.Column('request_hash', sa.String(64)),
    sa.Column('response', _LONG_TEXT),
    # Who used the key first: a key belongs to one actor (migration jet_sqla_0002).
    sa.Column('key_owner', sa.String(255)),
    # Change history (jet_sqla_0004): what a successful run changed, and the run an undo reverts.
    sa.Column('changes', _LONG_TEXT),
    # Unique: a run is undone at most once, even by two undos racing each other.
    sa.Column('undo_of', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), unique=True),
)

#: The most characters stored in a bounded column (``error``, ``actor``): MySQL's TEXT holds
#: 65,535 bytes, and 4-byte UTF-8 characters must fit too. Longer is cut, with a marker.
MAX_TEXT = 16_000
#: The owner of a key used with a shared token.
SHARED_TOKEN = 'the shared token'
#: JWT claims that name the user, in order of preference.
_USER_CLAIMS = ('user_id', 'user', 'sub', 'id', 'email')


def bounded(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """``text`` cut to at most ``limit`` characters, saying so, so that the row is always written."""
    if text is None or len(text) <= limit:
        return text
    marker = f'… [truncated: {len(text)} characters in all]'
    return text[: limit - len(marker)] + marker


def _encoded(value: Any) -> str:
    """Any value as JSON text for the log; never raises (a JWT may carry a claim past 64 bits)."""
    try:
        return encoding.dumps(value).decode()
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return json.dumps(repr(value)[:MAX_TEXT])


def key_owner(actor: Mapping[str, Any] | None) -> str:
    """Who an idempotency key belongs to: the JWT's user, or :data:`SHARED_TOKEN`."""
    if actor is None:
        return SHARED_TOKEN
    for claim in _USER_CLAIMS:
        value = actor.get(claim)
        if value is not None and not isinstance(value, (dict, list)):
            return bounded(f'{claim}:{value}', 255) or ''
    # No user claim: the claims themselves, without the ones that change with each token.
    stable = {key: value for key, value in actor.items() if key not in ('exp', 'iat', 'nbf', 'jti')}
    return 'claims:' + hashlib.sha256(_encoded(stable).encode('utf-8', 'surrogatepass')).hexdigest()


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
    #: When the run started, as ``time.time()``; PERF: a fifth of the cost of a datetime, and
    #: only an audited run turns it into one.
    started: float = field(default_factory=time.time)

    @property
    def created_at(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.started, datetime.UTC)

    def row(self) -> dict[str, Any]:
        return {
            'created_at': self.created_at,
            'action': self.action,
            'collection': self.collection,
            'ids': _encoded([str(value) for value in self.ids]),
            'params': _encoded(redact(self.params)),
            'actor': bounded(_encoded(self.actor)) if self.actor is not None else None,
            'outcome': self.outcome,
            'error': bounded(self.error),
            'duration_ms': self.duration_ms,
            'idempotency_key': self.idempotency_key,
            'request_hash': self.request_hash,
            'response': self.response.decode() if self.response is not None else None,
            'key_owner': key_owner(self.actor) if self.idempotency_key is not None else None,
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

    def stored(self, key: str) -> tuple[str | None, bytes | None, int, str | None] | None:
        """``(request_hash, response, log id, key_owner)`` committed under ``key``, or ``None``."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(action_log.c.idempotency_key, action_log.c.request_hash, action_log.c.response,
                          action_log.c.id, action_log.c.key_owner).where(action_log.c.idempotency_key == key)
            ).first()
        # Compared again here, byte for byte: no collation may decide which key is which.
        if row is None or row.idempotency_key != key:
            return None
        return (row.request_hash, row.response.encode() if row.response is not None else None, int(row.id),
                row.key_owner)

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
        try:
            values = entry.row()
            values['idempotency_key'] = None  # a failed run does not use up its key
            values['key_owner'] = None
            values['undo_of'] = None  # nor does a failed undo mark its run as undone
            with self.engine.begin() as connection:
                entry.log_id = _inserted_id(connection.execute(action_log.insert().values(values)))
        except Exception:  # noqa: BLE001 - the client's answer must not depend on the log
            log.exception('could not write the audit row of a failed %r run', entry.action)


def _inserted_id(result: sa.Result[Any]) -> int | None:
    key = result.inserted_primary_key  # type: ignore[attr-defined]
    return int(key[0]) if key is not None and key[0] is not None else None
