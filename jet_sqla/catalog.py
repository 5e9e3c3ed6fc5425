"""Models, registries and MetaData -> named collections.

Everything here is worked out once, when a :class:`Catalog` is built. Requests
only look things up: a collection by name, its label column, and, through
:class:`~jet_sqla.collection.Collection`, its primary key's coercer and the
loader that turns ids into ORM instances.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session

from . import loading
from .collection import CHUNK_SIZE, Collection, storage_type
from .errors import NotFound, RecordsNotFound
from .mapped import Target, registries_of

__all__ = [
    'CHUNK_SIZE',
    'Catalog',
    'Collection',
    'CollectionNamer',
    'Target',
    'default_collection_name',
    'label_column_for',
]

log = logging.getLogger(__name__)

#: Columns preferred as a record's display label, in this order.
LABEL_COLUMN_NAMES = ('name', 'title', 'label', 'email', 'username')

class CollectionNamer(Protocol):
    """Names the collection of a mapped class, like automap's ``classname_for_table``."""

    def __call__(self, mapper: Mapper[Any]) -> str: ...


def default_collection_name(mapper: Mapper[Any], default_schema: str | None = None) -> str:
    """``table``, or ``schema.table`` for a table outside the default schema."""
    table = mapper.local_table
    assert isinstance(table, sa.Table)
    if table.schema and table.schema != default_schema:
        return f'{table.schema}.{table.name}'
    return table.name


def label_column_for(table: sa.Table) -> sa.Column[Any]:
    """The column that labels a row: a well-known name, else the first string, else the pk."""
    columns = {column.name.lower(): column for column in table.columns}
    for name in LABEL_COLUMN_NAMES:
        column = columns.get(name)
        if column is not None and _is_string(column):
            return column
    for column in table.columns:
        if _is_string(column) and not column.foreign_keys:
            return column
    return next(iter(table.primary_key.columns))


def _is_string(column: sa.Column[Any]) -> bool:
    column_type = storage_type(column.type)
    return isinstance(column_type, sa.String) and not isinstance(column_type, sa.Enum)



class Catalog:
    """Every collection of a target, by name and by model.

    Args:
        target: A ``DeclarativeBase`` subclass, a ``registry``, or a ``MetaData``
            whose tables are automapped to classes.
        collection_name: Names a collection from its mapper; the default is
            :func:`default_collection_name`.
        labels: Overrides the label column per model or collection name.
        default_schema: The schema whose tables go unprefixed.
    """

    def __init__(
        self,
        target: Target,
        *,
        collection_name: CollectionNamer | None = None,
        labels: Mapping[type[Any] | str, str] | None = None,
        default_schema: str | None = None,
    ) -> None:
        self._registries = registries_of(target)
        self._by_name: dict[str, Collection] = {}
        self._by_model: dict[type[Any], Collection] = {}
        self._seen: set[Mapper[Any]] = set()
        self._name_for: Callable[[Mapper[Any]], str] = collection_name or (
            lambda mapper: default_collection_name(mapper, default_schema)
        )
        self._narrowed: dict[type[Any], Collection] = {}
        self.refresh()
        for key, column_name in (labels or {}).items():
            collection = self.get(key)
            label = collection.column_named(column_name)
            if label is None:
                raise ValueError(f'label column {column_name!r} is not a column of {collection.name!r}')
            collection.label = label

    def refresh(self) -> None:
        """Serve the classes mapped since the catalog was built, as well as the ones it has.

        A bridge built from ``db.Model`` in an app's extensions module exists
        before the models module is imported; their classes join it here.

        Raises:
            ValueError: two models would get the same collection name.
        """
        for found in self._registries:
            for mapper in list(found.mappers):
                if mapper not in self._seen:
                    self._seen.add(mapper)
                    self._add(mapper)

    def _add(self, mapper: Mapper[Any]) -> None:
        table = mapper.local_table
        if not isinstance(table, sa.Table) or mapper.single:
            return  # single-table inheritance shares its parent's collection
        name = self._name_for(mapper)
        if name in self._by_name:
            raise ValueError(
                f'two models are named collection {name!r}: '
                f'{self._by_name[name].model.__name__} and {mapper.class_.__name__}; '
                'pass collection_name= to tell them apart'
            )
        collection = Collection(name, mapper, label_column_for(table))
        self._by_name[name] = collection
        self._by_model[mapper.class_] = collection

    def __iter__(self) -> Iterator[Collection]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, key: object) -> bool:
        if key in self._by_name or key in self._by_model:
            return True
        if not isinstance(key, type):
            return False
        return key in self._narrowed or self._narrow(key) is not None or (
            self._newly_mapped(key) and (key in self._by_model or self._narrow(key) is not None))

    def get(self, key: type[Any] | str) -> Collection:
        """The collection of a model class or a collection name.

        Raises:
            NotFound: nothing is called ``key``.
        """
        if isinstance(key, str):
            collection = self._by_name.get(key)
            if collection is None:  # a class mapped since (declarations only: requests check `in` first)
                self.refresh()
                collection = self._by_name.get(key)
        else:
            collection = self._by_model.get(key)
            if collection is None and isinstance(key, type):
                collection = self._narrowed.get(key) or self._narrow(key)
                if collection is None and self._newly_mapped(key):
                    collection = self._by_model.get(key) or self._narrow(key)
        if collection is None:
            shown = key if isinstance(key, str) else getattr(key, '__name__', repr(key))
            raise NotFound(f'Unknown collection {shown!r}')
        return collection

    def _newly_mapped(self, model: type[Any]) -> bool:
        """Whether ``model`` is a class mapped since the last refresh (then it is served now)."""
        mapper = sa.inspect(model, raiseerr=False)
        if not isinstance(mapper, Mapper) or mapper in self._seen:
            return False
        if not any(mapper in found.mappers for found in self._registries):
            return False
        self.refresh()
        return True

    def _narrow(self, model: type[Any]) -> Collection | None:
        """A class served through another's collection: a single-table subclass, or the user's own
        class over a table that was automapped (``Bridge(SQLModel.metadata)``, ``model=Hero``)."""
        mapper = sa.inspect(model, raiseerr=False)
        if not isinstance(mapper, Mapper) or not isinstance(mapper.local_table, sa.Table):
            return None
        served = self.for_table(mapper.local_table)
        if served is None:
            return None
        # Loading through the class itself adds its discriminator: a sibling's id is then missing.
        narrowed = served.narrowed(model)
        self._narrowed[model] = narrowed
        return narrowed

    def for_table(self, table: sa.Table) -> Collection | None:
        """The collection mapped to ``table``, if any."""
        return next((found for found in self if found.table is table), None)

    def load_together(
        self,
        session: Session,
        requests: Sequence[tuple[Collection, Sequence[Any]]],
        *,
        lock: bool = False,
    ) -> list[list[Any]]:
        """Load several id lists, possibly of several collections, in one deadlock-safe order.

        Ids of the same collection are merged and loaded once; with ``lock``,
        collections are visited in name order and rows in pk order, so any two
        requests take their locks in the same global order.

        Returns:
            One list of instances per request, in the order of its ids.

        Raises:
            RecordsNotFound: the first collection with missing ids, listing them all.
        """
        # Keyed by name and class: a single-table subclass loads only its own rows of the shared table.
        wanted: dict[tuple[str, str], tuple[Collection, Sequence[Any]]] = {}
        if len(requests) == 1:
            # PERF: the common case, one id list (unique once coerced): no merged copy of it.
            wanted[_load_key(requests[0][0])] = requests[0]
        else:
            merged: dict[tuple[str, str], tuple[Collection, dict[Any, None]]] = {}
            for collection, ids in requests:
                entry = merged.setdefault(_load_key(collection), (collection, {}))
                entry[1].update(dict.fromkeys(ids))
            wanted = {key: (collection, list(keys)) for key, (collection, keys) in merged.items()}
        total = sum(len(ids) for _, ids in wanted.values())
        # PERF: see loading.paused_gc for why a large load runs without the cyclic collector.
        with loading.paused_gc() if total >= loading.GC_PAUSE_MIN_IDS else nullcontext():
            loaded: dict[tuple[str, str], dict[Any, Any]] = {}
            for key in sorted(wanted):
                collection, merged_ids = wanted[key]
                loaded[key] = dict(collection.iter_loaded(session, merged_ids, lock=lock))
            results: list[list[Any]] = []
            for collection, ids in requests:
                found = loaded[_load_key(collection)]
                # PERF: one pass; the missing ids are only worked out when some are.
                instances = list(map(found.get, ids))
                if None in instances:
                    raise RecordsNotFound(collection.name, [value for value in ids if value not in found])
                results.append(instances)
        return results


def _load_key(collection: Collection) -> tuple[str, str]:
    return collection.name, collection.model.__qualname__
