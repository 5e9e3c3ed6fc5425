"""Models, registries and MetaData -> named collections.

Everything here is worked out once, when a :class:`Catalog` is built. Requests
only look things up: a collection by name, its primary key's coercer, its
label column, and the loader that turns ids into ORM instances.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.ext.automap import automap_base
from sqlalchemy.orm import DeclarativeBase, Mapper, Session, registry

from .coerce import Coercer, coercer_for_python_type
from .errors import InvalidParams, NotFound, RecordsNotFound

__all__ = [
    'CHUNK_SIZE',
    'Catalog',
    'Collection',
    'CollectionNamer',
    'default_collection_name',
    'label_column_for',
]

log = logging.getLogger(__name__)

#: Ids are loaded with one ``SELECT … WHERE pk IN (…)`` per chunk of this many.
CHUNK_SIZE = 500

#: Columns preferred as a record's display label, in this order.
LABEL_COLUMN_NAMES = ('name', 'title', 'label', 'email', 'username')

Target = type[DeclarativeBase] | registry | sa.MetaData


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
    return isinstance(column.type, sa.String) and not isinstance(column.type, sa.Enum)


def _python_type(column: sa.Column[Any]) -> type:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return str
    return python_type if isinstance(python_type, type) else str


class Collection:
    """One mapped table, as Jet sees it.

    Attributes:
        name: The collection name sent on the wire.
        model: The mapped class.
        table: Its table.
        pk: The primary-key column; ``None`` when the key is composite.
        label: The column whose value labels a row in options.
    """

    __slots__ = ('name', 'model', 'table', 'pk', 'pk_attribute', 'label', '_coerce_pk', '_pk_bits')

    def __init__(self, name: str, mapper: Mapper[Any], label: sa.Column[Any]) -> None:
        self.name = name
        self.model: type[Any] = mapper.class_
        table = mapper.local_table
        assert isinstance(table, sa.Table)
        self.table = table
        # Typed as ColumnElement, but a mapper over a Table (asserted above) keys on its Columns.
        pk_columns = cast('list[sa.Column[Any]]', list(mapper.primary_key))
        self.pk: sa.Column[Any] | None = pk_columns[0] if len(pk_columns) == 1 else None
        self.pk_attribute: str | None = None
        if self.pk is not None:
            self.pk_attribute = mapper.get_property_by_column(self.pk).key
        self.label = label
        self._coerce_pk: Coercer = coercer_for_python_type(
            _python_type(self.pk) if self.pk is not None else str
        )
        self._pk_bits = integer_bits(self.pk.type) if self.pk is not None else None

    def __repr__(self) -> str:
        return f'<Collection {self.name!r} of {self.model.__name__}>'

    @property
    def has_single_pk(self) -> bool:
        return self.pk is not None

    def coerce_id(self, raw: Any) -> Any:
        """Coerce one raw id to the primary key's Python type.

        Raises:
            ValueError: ``raw`` is not a valid key.
        """
        return self._coerce_pk(raw)

    def can_exist(self, key: Any, dialect: str) -> bool:
        """Whether ``key`` fits the primary key's column type on ``dialect``.

        One that does not can name no row: it is simply missing, and is never
        sent to a database that would refuse to bind it (PostgreSQL's int4).
        """
        return bool(fits_integer_column(self._pk_bits, key, dialect))

    def coerce_ids(self, raw_ids: Iterable[Any], field: str = 'ids') -> list[Any]:
        """Coerce ids, dropping duplicates and keeping the first-seen order.

        Raises:
            InvalidParams: naming every id that cannot be coerced.
        """
        coerced: dict[Any, None] = {}
        bad: list[str] = []
        for raw in raw_ids:
            try:
                coerced[self._coerce_pk(raw)] = None
            except ValueError as error:
                bad.append(str(error))
        if bad:
            shown = '; '.join(bad[:10]) + (f' (and {len(bad) - 10} more)' if len(bad) > 10 else '')
            raise InvalidParams({field: f'invalid id: {shown}'})
        return list(coerced)

    def iter_loaded(
        self, session: Session, ids: Sequence[Any], *, lock: bool = False
    ) -> Iterator[tuple[Any, Any]]:
        """Yield ``(pk, instance)`` for the coerced, unique ids that exist.

        One ``SELECT … WHERE pk IN (…)`` per :data:`CHUNK_SIZE` ids. With
        ``lock``, rows are read ``FOR UPDATE`` in primary-key order, chunk after
        chunk, so two actions locking overlapping rows cannot deadlock.
        """
        assert self.pk_attribute is not None, 'a composite primary key cannot be loaded by id'
        pk = getattr(self.model, self.pk_attribute)
        if self._pk_bits is not None:
            dialect = session.get_bind().dialect.name
            ids = [value for value in ids if fits_integer_column(self._pk_bits, value, dialect)]
        ordered = sorted(ids) if lock else list(ids)
        for start in range(0, len(ordered), CHUNK_SIZE):
            statement = sa.select(self.model).where(pk.in_(ordered[start : start + CHUNK_SIZE]))
            if lock:
                statement = statement.order_by(pk).with_for_update()
            for instance in session.scalars(statement):
                yield getattr(instance, self.pk_attribute), instance


def integer_bits(column_type: sa.types.TypeEngine[Any]) -> int | None:
    """How many bits an integer column type holds (16, 32 or 64), or ``None`` for other types."""
    if isinstance(column_type, sa.BigInteger):
        return 64
    if isinstance(column_type, sa.SmallInteger):
        return 16
    if isinstance(column_type, sa.Integer):
        return 32
    return None


def fits_integer_column(bits: int | None, value: Any, dialect: str) -> bool:
    """Whether ``value`` can be stored in an integer column of ``bits`` on ``dialect``."""
    if bits is None or not isinstance(value, int) or isinstance(value, bool):
        return True
    if dialect == 'sqlite':
        bits = 64  # every SQLite INTEGER holds 64 bits, whatever the declared type
    return bool(-(2 ** (bits - 1)) <= value < 2 ** (bits - 1))


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
        mappers = _mappers_of(target)
        self._by_name: dict[str, Collection] = {}
        self._by_model: dict[type[Any], Collection] = {}
        name_for: Callable[[Mapper[Any]], str] = collection_name or (
            lambda mapper: default_collection_name(mapper, default_schema)
        )
        for mapper in mappers:
            table = mapper.local_table
            if not isinstance(table, sa.Table) or mapper.single:
                continue  # single-table inheritance shares its parent's collection
            name = name_for(mapper)
            if name in self._by_name:
                raise ValueError(
                    f'two models are named collection {name!r}: '
                    f'{self._by_name[name].model.__name__} and {mapper.class_.__name__}; '
                    'pass collection_name= to tell them apart'
                )
            collection = Collection(name, mapper, label_column_for(table))
            self._by_name[name] = collection
            self._by_model[mapper.class_] = collection
        for key, column_name in (labels or {}).items():
            collection = self.get(key)
            if column_name not in collection.table.columns:
                raise ValueError(f'label column {column_name!r} is not a column of {collection.name!r}')
            collection.label = collection.table.columns[column_name]

    def __iter__(self) -> Iterator[Collection]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, key: object) -> bool:
        return key in self._by_name or key in self._by_model

    def get(self, key: type[Any] | str) -> Collection:
        """The collection of a model class or a collection name.

        Raises:
            NotFound: nothing is called ``key``.
        """
        if isinstance(key, str):
            collection = self._by_name.get(key)
        else:
            collection = self._by_model.get(key)
            if collection is None and isinstance(key, type):
                # A subclass in single-table inheritance belongs to its parent's collection.
                collection = next(
                    (found for model, found in self._by_model.items() if issubclass(key, model)),
                    None,
                )
        if collection is None:
            shown = key if isinstance(key, str) else getattr(key, '__name__', repr(key))
            raise NotFound(f'Unknown collection {shown!r}')
        return collection

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
        wanted: dict[str, tuple[Collection, dict[Any, None]]] = {}
        for collection, ids in requests:
            entry = wanted.setdefault(collection.name, (collection, {}))
            entry[1].update(dict.fromkeys(ids))
        loaded: dict[str, dict[Any, Any]] = {}
        for name in sorted(wanted):
            collection, merged_ids = wanted[name]
            loaded[name] = dict(collection.iter_loaded(session, list(merged_ids), lock=lock))
        for collection, ids in requests:
            missing = [value for value in ids if value not in loaded[collection.name]]
            if missing:
                raise RecordsNotFound(collection.name, missing)
        return [[loaded[collection.name][value] for value in ids] for collection, ids in requests]


def _mappers_of(target: Target) -> list[Mapper[Any]]:
    if isinstance(target, sa.MetaData):
        return _automap(target)
    if isinstance(target, registry):
        return list(target.mappers)
    target_registry = getattr(target, 'registry', None)
    if isinstance(target_registry, registry):
        return list(target_registry.mappers)
    raise TypeError(
        'jet_sqla needs a DeclarativeBase subclass, a sqlalchemy.orm.registry or a MetaData, '
        f'not {target!r}'
    )


def _automap(metadata: sa.MetaData) -> list[Mapper[Any]]:
    base = automap_base(metadata=metadata)
    # Columns are all jet_sqla needs; generated relationships can clash on real schemas.
    base.prepare(generate_relationship=_no_relationship)
    mappers = list(base.registry.mappers)
    mapped = {mapper.local_table for mapper in mappers}
    for table in metadata.sorted_tables:
        if table not in mapped:
            log.warning('table %r has no primary key and is not served as a collection', table.fullname)
    return mappers


def _no_relationship(*args: Any, **kwargs: Any) -> None:
    return None
