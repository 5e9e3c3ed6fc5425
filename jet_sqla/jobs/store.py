"""Reading and writing the job tables: recording a job, one chunk's marks, progress, cancelling.

The writes that belong to a run (a chunk's done or failed mark) happen in the
transaction :class:`jet_sqla.actions.Executor` opens for it, through
:class:`StoredChunk`. The rest is bookkeeping of one statement each: a job's
published, started and cancelled marks.
"""

from __future__ import annotations

import bisect
import datetime
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import encoding
from ..collection import Collection
from ..declaration import Action, Actor
from ..errors import InvalidParams, TooLarge
from ..selection import Selection
from .tables import CANCELLED, DONE, FAILED, QUEUED, chunk_table, job_table

__all__ = ['MAX_ERRORS', 'JobStore', 'StoredChunk', 'job_params', 'utcnow']

#: The most failed chunks ``get_job`` lists.
MAX_ERRORS = 100
#: Form keys that say which records, not how: the chunks carry the ids instead.
_SELECTION_KEYS = frozenset({'ids', 'id', 'inverseIds', 'inverse_ids', 'idempotency_key'})


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def job_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The form a job's chunks are run with: the submitted params without the selection."""
    return {key: value for key, value in params.items() if key not in _SELECTION_KEYS}


def _aware(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite keeps no zone; jet_sqla writes UTC
        value = value.replace(tzinfo=datetime.UTC)
    return value.isoformat()


class JobStore:
    """The job tables, through the application's engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def missing_tables(self) -> list[str]:
        inspector = sa.inspect(self.engine)
        return [table.name for table in (job_table, chunk_table) if not inspector.has_table(table.name)]

    def record(self, session: Session, action: Action, collection: Collection | None,
               selection: Selection | None, params: Mapping[str, Any], actor: Actor | None,
               max_records: int) -> dict[str, Any]:
        """Insert a job and its chunks, in primary-key order, in ``session``'s transaction.

        A listed selection's chunks carry their ids. An "all but these"
        selection's chunks are ranges of the primary key, found by one
        window-function query, so accepting a million records reads a few
        thousand keys, not a million.

        Raises:
            TooLarge: more than ``max_records`` records are selected.
            InvalidParams: an "all but these" selection holds no record.
        """
        job_id = uuid.uuid4().hex
        size = action.chunk_size if action.bulk else 1
        chunks: list[dict[str, Any]]
        if selection is None:
            total, chunks = 0, [{'size': 0, 'first_id': None, 'last_id': None, 'ids': None}]
        elif not selection.inverse:
            ordered = sorted(selection.ids)
            total = len(ordered)
            chunks = [_listed_chunk(ordered[start : start + size]) for start in range(0, total, size)]
        else:
            total = selection.count(session)
            if total > max_records:
                raise TooLarge(f'At most {max_records} records per background run; the selection holds {total}')
            if total == 0:
                raise InvalidParams({'ids': 'the selection holds no records'})
            chunks = _range_chunks(session, selection, size, total)
        now = utcnow()
        session.execute(job_table.insert().values(
            id=job_id, action=action.name, collection=collection.name if collection is not None else None,
            params=encoding.dumps(job_params(params)).decode(),
            actor=encoding.dumps(actor).decode() if actor is not None else None,
            total=total, chunks=len(chunks), created_at=now,
        ))
        session.execute(chunk_table.insert(), [
            {'job_id': job_id, 'seq': seq, 'status': QUEUED, **chunk} for seq, chunk in enumerate(chunks)
        ])
        return {'job': job_id, 'total': total, 'chunks': len(chunks)}

    def job(self, job_id: str) -> sa.Row[Any] | None:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(job_table).where(job_table.c.id == job_id)).first()

    def queued_seqs(self, job_id: str) -> list[int]:
        return [seq for seq, _ in self.queued_chunks(job_id)]

    def queued_chunks(self, job_id: str) -> list[tuple[int, int]]:
        """Each queued chunk of ``job_id`` as ``(seq, records)``, in order."""
        with self.engine.connect() as connection:
            return [(row.seq, row.size) for row in connection.execute(
                sa.select(chunk_table.c.seq, chunk_table.c.size)
                .where(chunk_table.c.job_id == job_id, chunk_table.c.status == QUEUED)
                .order_by(chunk_table.c.seq)
            )]

    def unfinished(self) -> list[tuple[str, int]]:
        """Every queued chunk of a job that was not cancelled, oldest job first."""
        statement = (
            sa.select(chunk_table.c.job_id, chunk_table.c.seq)
            .join(job_table, job_table.c.id == chunk_table.c.job_id)
            .where(chunk_table.c.status == QUEUED, job_table.c.cancelled_at.is_(None))
            .order_by(job_table.c.created_at, chunk_table.c.seq)
        )
        with self.engine.connect() as connection:
            return [(row.job_id, row.seq) for row in connection.execute(statement)]

    def unpublished(self, older_than: datetime.timedelta) -> list[str]:
        """Jobs recorded before ``older_than`` ago whose chunks never reached a broker."""
        cutoff = utcnow() - older_than
        with self.engine.connect() as connection:
            return list(connection.scalars(
                sa.select(job_table.c.id)
                .where(job_table.c.published_at.is_(None), job_table.c.cancelled_at.is_(None),
                       job_table.c.created_at < cutoff)
                .order_by(job_table.c.created_at)
            ))

    def stalled(self, older_than: datetime.timedelta) -> list[str]:
        """Published jobs, not cancelled, with queued chunks, none of whose chunks finished for ``older_than``.

        Since their last finished chunk (or their publish, when none has): the
        broker may have lost their messages (a Redis restarted without
        persistence, a failover to an empty replica).
        """
        cutoff = utcnow() - older_than
        waiting = sa.select(chunk_table.c.job_id).where(chunk_table.c.status == QUEUED).distinct().subquery()
        last_finished = (sa.select(sa.func.max(chunk_table.c.finished_at))
                         .where(chunk_table.c.job_id == job_table.c.id).scalar_subquery())
        with self.engine.connect() as connection:
            return list(connection.scalars(
                sa.select(job_table.c.id)
                .join(waiting, waiting.c.job_id == job_table.c.id)
                .where(job_table.c.published_at.is_not(None), job_table.c.cancelled_at.is_(None),
                       sa.func.coalesce(last_finished, job_table.c.published_at) < cutoff)
                .order_by(job_table.c.created_at)
            ))

    def _mark(self, job_id: str, column: sa.Column[Any]) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(
                job_table.update().where(job_table.c.id == job_id, column.is_(None)).values({column.key: utcnow()})
            )
            return bool(result.rowcount)

    def mark_published(self, job_id: str) -> None:
        self._mark(job_id, job_table.c.published_at)

    def mark_started(self, job_id: str) -> None:
        self._mark(job_id, job_table.c.started_at)

    def cancel(self, job_id: str) -> None:
        """Mark the job cancelled: chunks delivered from now on are skipped; running ones finish."""
        self._mark(job_id, job_table.c.cancelled_at)

    def progress(self, job: sa.Row[Any], collection: Collection | None) -> dict[str, Any]:
        """The job as ``get_job`` answers it; read from committed chunk marks only."""
        with self.engine.connect() as connection:
            totals = {
                row.status: row for row in connection.execute(
                    sa.select(chunk_table.c.status, sa.func.count().label('chunks'),
                              sa.func.sum(chunk_table.c.size).label('size'),
                              sa.func.sum(chunk_table.c.done).label('done'),
                              sa.func.max(chunk_table.c.finished_at).label('finished_at'))
                    .where(chunk_table.c.job_id == job.id).group_by(chunk_table.c.status)
                )
            }
            failures = connection.execute(
                sa.select(chunk_table.c.first_id, chunk_table.c.last_id, chunk_table.c.error)
                .where(chunk_table.c.job_id == job.id, chunk_table.c.status == FAILED)
                .order_by(chunk_table.c.seq).limit(MAX_ERRORS)
            ).all()
        finished = sum(totals[status].chunks for status in (DONE, FAILED, CANCELLED) if status in totals)
        finished_at = None
        if job.cancelled_at is not None:
            status, finished_at = 'cancelled', job.cancelled_at
        elif finished >= job.chunks:
            status = 'failed' if FAILED in totals else 'succeeded'
            finished_at = max(row.finished_at for row in totals.values() if row.finished_at is not None)
        elif finished or job.started_at is not None:
            status = 'running'
        else:
            status = 'queued'
        return {
            'job': job.id,
            'action': job.action,
            'collection': job.collection,
            'status': status,
            'total': job.total,
            'done': int(totals[DONE].done or 0) if DONE in totals else 0,
            'failed': int(totals[FAILED].size or 0) if FAILED in totals else 0,
            'errors': [{'first_id': _id_value(collection, row.first_id), 'last_id': _id_value(collection, row.last_id),
                        'message': row.error} for row in failures],
            'created_at': _aware(job.created_at),
            'started_at': _aware(job.started_at),
            'finished_at': _aware(finished_at),
        }


def _listed_chunk(ids: Sequence[Any]) -> dict[str, Any]:
    return {'size': len(ids), 'first_id': str(ids[0]), 'last_id': str(ids[-1]),
            'ids': encoding.dumps([str(value) for value in ids]).decode()}


def _range_chunks(session: Session, selection: Selection, size: int, total: int) -> list[dict[str, Any]]:
    """Chunks of ``size`` rows of the table, as closed primary-key ranges, minus the excluded ids in each.

    ``total`` is the selection's count; the last chunk holds what the others leave of it.
    """
    pk = selection.collection.pk
    assert pk is not None
    numbered = sa.select(pk.label('pk'), sa.func.row_number().over(order_by=pk).label('rn')).subquery()
    # Every row that starts or ends a chunk; the last chunk ends at the largest key.
    edges = session.execute(
        sa.select(numbered.c.pk, numbered.c.rn)
        .where(sa.or_((numbered.c.rn - 1) % size == 0, numbered.c.rn % size == 0))
        .order_by(numbered.c.rn)
    ).all()
    largest = session.scalar(sa.select(sa.func.max(pk)))
    starts = [(row.pk, row.rn) for row in edges if (row.rn - 1) % size == 0]
    ends = [row.pk for row in edges if row.rn % size == 0]
    if len(ends) < len(starts):
        ends.append(largest)
    excluded = sorted(selection.ids)
    chunks: list[dict[str, Any]] = []
    for (first, _), last in zip(starts, ends, strict=True):
        dropped = excluded[bisect.bisect_left(excluded, first) : bisect.bisect_right(excluded, last)]
        chunks.append({'size': max(0, size - len(dropped)), 'first_id': str(first), 'last_id': str(last),
                       'ids': encoding.dumps({'except': [str(value) for value in dropped]}).decode()})
    chunks[-1]['size'] = max(0, total - sum(chunk['size'] for chunk in chunks[:-1]))
    return chunks


def _id_value(collection: Collection | None, stored: str | None) -> Any:
    """A stored id as the client sent it: ``7``, not ``"7"``."""
    if stored is None or collection is None:
        return stored
    try:
        return collection.coerce_id(stored)
    except ValueError:
        return stored


class StoredChunk:
    """One delivery of one chunk, as :meth:`jet_sqla.actions.Executor.run_chunk` runs it.

    Args:
        job: The job's row.
        seq: The chunk's number in the job.
        action: The declared action the job runs.
        collection: Its collection, or ``None``.
    """

    def __init__(self, job: sa.Row[Any], seq: int, action: Action, collection: Collection | None) -> None:
        self.job_id: str = job.id
        self.seq = seq
        self.action = action
        self.collection = collection
        self.params: Mapping[str, Any] = encoding.loads(job.params)
        self.actor: Actor | None = encoding.loads(job.actor) if job.actor is not None else None
        self._stored_ids: str | None = None
        self._first_id: str | None = None
        self._last_id: str | None = None
        self._started = utcnow()

    def _where(self) -> sa.ColumnElement[bool]:
        return sa.and_(chunk_table.c.job_id == self.job_id, chunk_table.c.seq == self.seq)

    def claim(self, session: Session) -> bool:
        # FOR UPDATE: a second delivery of the same chunk waits here, then finds it done and skips it.
        row = session.execute(
            sa.select(chunk_table.c.status, chunk_table.c.ids, chunk_table.c.first_id, chunk_table.c.last_id)
            .where(self._where()).with_for_update()
        ).first()
        if row is None or row.status != QUEUED:
            return False
        if session.scalar(sa.select(job_table.c.cancelled_at).where(job_table.c.id == self.job_id)) is not None:
            session.execute(chunk_table.update().where(self._where()).values(status=CANCELLED, finished_at=utcnow()))
            return False
        self._stored_ids = row.ids
        self._first_id, self._last_id = row.first_id, row.last_id
        self._started = utcnow()
        return True

    def ids(self, session: Session) -> list[Any]:
        collection = self.collection
        assert collection is not None and collection.pk is not None
        stored = encoding.loads(self._stored_ids) if self._stored_ids else []
        if isinstance(stored, list):
            return collection.coerce_ids(stored)
        # A range of an "all but these" selection: the rows between its bounds now, minus the excluded.
        pk = collection.pk
        first, last = collection.coerce_id(self._first_id), collection.coerce_id(self._last_id)
        excluded = set(collection.coerce_ids(stored.get('except', [])))
        found = session.scalars(sa.select(pk).where(pk >= first, pk <= last).order_by(pk))
        return [value for value in found if value not in excluded]

    def complete(self, session: Session, count: int) -> None:
        session.execute(chunk_table.update().where(self._where()).values(
            status=DONE, done=count, started_at=self._started, finished_at=utcnow()))

    def fail(self, session: Session, message: str) -> None:
        # Only a chunk still queued: a concurrent delivery may have completed it meanwhile.
        session.execute(chunk_table.update().where(self._where(), chunk_table.c.status == QUEUED).values(
            status=FAILED, error=message[:2000], started_at=self._started, finished_at=utcnow()))
