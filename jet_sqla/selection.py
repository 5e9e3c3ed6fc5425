"""Which records of a collection an action runs on: the ids listed, or "all but these".

Jet Admin's "select all" sends ``inverseIds: true`` with the ids the operator
un-ticked. A :class:`Selection` holds that choice and reads it from the
database without ever materialising the whole table's keys in one statement.

Interface (stable; request runs, background chunks and previews all use it)::

    selection = Selection(collection, ids, inverse=False)
    selection.collection   # the Collection (single primary key)
    selection.ids          # the coerced listed ids, unique, in request order (a tuple)
    selection.inverse      # True: every record except ``ids``; an empty ``ids`` means all
    selection.count(session_or_connection) -> int
        # how many existing records are selected, counted in SQL
    selection.iter_pk_chunks(session_or_connection, chunk_size=CHUNK_SIZE) -> Iterator[list[pk]]
        # the selected primary keys that exist, in primary-key order, in chunks of at most chunk_size
    selection.iter_instance_chunks(session, chunk_size=CHUNK_SIZE, lock=False) -> Iterator[list[instance]]
        # the same records as ORM instances, same order and chunking; lock: FOR UPDATE
    selection.missing(session_or_connection) -> list[pk]
        # the listed ids that name no record (always [] for an inverse selection)
    load_selected(session, selection, lock=..., max_ids=...) -> list[instance]
        # what one request runs on: counted (413 past max_ids, 400 when empty), then loaded

How it reads, so that no statement grows with the table:

- A listed selection (``inverse=False``) reads ``WHERE pk IN (…)`` per chunk
  of at most ``chunk_size`` listed ids, the ids sorted in Python.
- An inverse selection pages with a keyset, ``WHERE pk > :last ORDER BY pk
  LIMIT :n``, and drops the excluded ids in Python against a set of the listed
  ids (at most ``max_ids`` of them, checked where the ids are parsed). Its count
  is ``count(*)`` of the table minus the count of the listed ids that exist,
  the latter in bounded ``IN`` chunks.

Primary-key order is the database's for an inverse selection (its keyset
follows the index) and Python's order of the coerced keys for a listed one;
the two agree for integer and UUID keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .collection import CHUNK_SIZE, Collection
from .errors import InvalidParams, RecordsNotFound, TooLarge

__all__ = ['CHUNK_SIZE', 'EXISTENCE_BATCH', 'Selection', 'check_exist', 'keys_of', 'load_selected']

Reader = Session | sa.Connection


class Selection:
    """The records an action runs on.

    Args:
        collection: The collection; it must have a single-column primary key.
        ids: The listed ids, already coerced to the key's type (see
            :meth:`Collection.coerce_ids`). Duplicates are dropped.
        inverse: Select every record except ``ids`` ("select all").

    Raises:
        TypeError: the collection's primary key is composite.
    """

    __slots__ = ('_excluded', 'collection', 'ids', 'inverse')

    def __init__(self, collection: Collection, ids: Iterable[Any] = (), *, inverse: bool = False) -> None:
        if collection.pk is None or collection.pk_attribute is None:
            raise TypeError(f'{collection.name!r} has a composite primary key; a selection needs a single one')
        self.collection = collection
        self.ids: tuple[Any, ...] = tuple(dict.fromkeys(ids))
        self.inverse = inverse
        self._excluded = frozenset(self.ids) if inverse else frozenset()

    def __repr__(self) -> str:
        kind = 'all but' if self.inverse else 'ids'
        return f'<Selection {self.collection.name} {kind} {len(self.ids)} listed>'

    @property
    def _pk(self) -> sa.Column[Any]:
        assert self.collection.pk is not None
        return self.collection.pk

    def count(self, reader: Reader) -> int:
        """How many existing records are selected; every statement is bounded."""
        listed = self._count_listed(reader)
        if not self.inverse:
            return listed
        total = reader.execute(sa.select(sa.func.count()).select_from(self.collection.table)).scalar_one()
        return int(total) - listed

    def _count_listed(self, reader: Reader) -> int:
        found = 0
        for chunk in _chunks(self.ids, CHUNK_SIZE):
            statement = sa.select(sa.func.count()).select_from(self.collection.table).where(self._pk.in_(chunk))
            found += int(reader.execute(statement).scalar_one())
        return found

    def missing(self, reader: Reader) -> list[Any]:
        """The listed ids that name no record, in request order; ``[]`` for an inverse selection."""
        if self.inverse:
            return []
        found: set[Any] = set()
        for chunk in _chunks(self.ids, CHUNK_SIZE):
            found.update(reader.execute(sa.select(self._pk).where(self._pk.in_(chunk))).scalars())
        return [value for value in self.ids if value not in found]

    def iter_pk_chunks(self, reader: Reader, chunk_size: int = CHUNK_SIZE) -> Iterator[list[Any]]:
        """The selected primary keys that exist, in primary-key order, at most ``chunk_size`` per chunk."""
        _check_chunk_size(chunk_size)
        pk = self._pk
        if not self.inverse:
            for chunk in _chunks(sorted(self.ids), chunk_size):
                found = list(reader.execute(sa.select(pk).where(pk.in_(chunk)).order_by(pk)).scalars())
                if found:
                    yield found
            return
        last: Any = None
        while True:
            statement = sa.select(pk).order_by(pk).limit(chunk_size)
            if last is not None:
                statement = statement.where(pk > last)
            page = list(reader.execute(statement).scalars())
            if not page:
                return
            last = page[-1]
            kept = [value for value in page if value not in self._excluded]
            if kept:
                yield kept
            if len(page) < chunk_size:
                return

    def iter_instance_chunks(
        self, session: Session, chunk_size: int = CHUNK_SIZE, *, lock: bool = False
    ) -> Iterator[list[Any]]:
        """The selected records as ORM instances, in primary-key order, at most ``chunk_size`` per chunk.

        One SELECT per chunk. With ``lock``, rows are read ``FOR UPDATE`` in
        primary-key order; an inverse selection also locks the excluded rows
        its pages pass over, which keeps the one lock order that cannot deadlock.
        """
        _check_chunk_size(chunk_size)
        model = self.collection.model
        attribute = self.collection.pk_attribute
        assert attribute is not None
        pk = getattr(model, attribute)
        if not self.inverse:
            for chunk in _chunks(sorted(self.ids), chunk_size):
                statement = sa.select(model).where(pk.in_(chunk)).order_by(pk)
                if lock:
                    statement = statement.with_for_update()
                found = list(session.scalars(statement))
                if found:
                    yield found
            return
        last: Any = None
        while True:
            statement = sa.select(model).order_by(pk).limit(chunk_size)
            if last is not None:
                statement = statement.where(pk > last)
            if lock:
                statement = statement.with_for_update()
            page = list(session.scalars(statement))
            if not page:
                return
            last = getattr(page[-1], attribute)
            kept = [instance for instance in page if getattr(instance, attribute) not in self._excluded]
            if kept:
                yield kept
            if len(page) < chunk_size:
                return


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError('chunk_size must be at least 1')


def check_exist(session: Session, collection: Collection, ids: list[Any]) -> None:
    """Raise RecordsNotFound for listed ids with no row; reads keys only, in few statements."""
    assert collection.pk is not None
    found: set[Any] = set()
    for batch in _chunks(ids, EXISTENCE_BATCH):
        found.update(session.scalars(sa.select(collection.pk).where(collection.pk.in_(batch))))
    if len(found) < len(ids):
        raise RecordsNotFound(collection.name, [value for value in ids if value not in found])


#: Ids per existence check of a background run: far more than a chunk, as only keys come back,
#: so that accepting a job never costs a statement per chunk (and within SQLite's 32,766 parameters).
EXISTENCE_BATCH = 10_000


def keys_of(collection: Collection, instances: list[Any]) -> list[Any]:
    """The primary keys of loaded records: the ids a run really ran on."""
    assert collection.pk_attribute is not None
    return [getattr(instance, collection.pk_attribute) for instance in instances]


def load_selected(session: Session, selection: Selection, *, lock: bool, max_ids: int) -> list[Any]:
    """The instances of a "select all" selection that one request runs on, in primary-key order.

    Counted first, then loaded chunk by chunk.

    Raises:
        TooLarge: more records than one request may run on (``max_ids``); a
            background run does not come here.
        InvalidParams: the selection is empty.
    """
    count = selection.count(session)
    if count > max_ids:
        raise TooLarge(f'"Select all" chose {count} records of this collection; one request may run on '
                       f'at most {max_ids}')
    if count == 0:
        raise InvalidParams({'ids': 'no record is selected: every record of the collection is excluded'})
    return [instance for chunk in selection.iter_instance_chunks(session, lock=lock) for instance in chunk]
