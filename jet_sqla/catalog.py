"""Models, registries and MetaData -> named collections.

Everything here is worked out once, when a :class:`Catalog` is built. Requests
only look things up: a collection by name, its primary key's coercer, its
label column, and the loader that turns ids into ORM instances.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session

from . import loading
from .coerce import INT_MAX, INT_MIN, Coercer, coerce_int, coercer_for_python_type
from .errors import InvalidParams, NotFound, RecordsNotFound
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

#: Ids per ``SELECT … WHERE pk IN (…)`` where no faster form is known (see :mod:`jet_sqla.loading`).
CHUNK_SIZE = loading.DEFAULT_CHUNK

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


def storage_type(column_type: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
    """The type a custom ``TypeDecorator`` (SQLModel's ``AutoString``…) stores its values as."""
    while isinstance(column_type, sa.types.TypeDecorator):
        column_type = column_type.impl_instance
    return column_type


#: The largest unsigned 64-bit integer: a MariaDB/MySQL ``BIGINT UNSIGNED`` key can reach it.
UINT64_MAX = 2**64 - 1


def _key_coercer(column: sa.Column[Any] | None) -> Coercer:
    if column is None:
        return coercer_for_python_type(str)
    if getattr(storage_type(column.type), 'unsigned', False):
        return _coerce_unsigned
    return coercer_for_python_type(_python_type(column))


def _coerce_unsigned(value: Any) -> int:
    """An unsigned key: 0 up to :data:`UINT64_MAX`, beyond the signed range other ids keep to."""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 20:
        number = int(text)  # past the signed range, where coerce_int stops
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        number = value
    else:
        number = coerce_int(value)  # every other shape, refused or accepted with its reasons
    if not 0 <= number <= UINT64_MAX:
        raise ValueError(f'{number} is out of range')
    return number


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

    __slots__ = ('name', 'model', 'table', 'pk', 'pk_attribute', 'label', '_coerce_pk', '_pk_bits',
                 'attribute_names')

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
        self._coerce_pk: Coercer = _key_coercer(self.pk)
        self._pk_bits = integer_range(self.pk.type) if self.pk is not None else None
        #: Attribute names by column, for the columns the class maps under another name.
        self.attribute_names: dict[sa.Column[Any], str] = {}
        for column in table.columns:
            try:
                self.attribute_names[column] = mapper.get_property_by_column(column).key
            except Exception:  # noqa: BLE001 - a column the class leaves unmapped keeps its own key
                self.attribute_names[column] = column.key

    def narrowed(self, model: type[Any]) -> Collection:
        """The same collection, loading only ``model``'s rows (a subclass in single-table inheritance)."""
        return Collection(self.name, sa.inspect(model), self.label)

    def attribute_name(self, column: sa.Column[Any]) -> str:
        """The name the model knows ``column`` by: its attribute, else its key."""
        return self.attribute_names.get(column, column.key)

    def column_named(self, name: str) -> sa.Column[Any] | None:
        """The column called ``name``, by attribute name first, then by column name."""
        for column, attribute in self.attribute_names.items():
            if attribute == name:
                return column
        column = self.table.columns.get(name)
        return column if column is not None else next((c for c in self.table.columns if c.name == name), None)

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
        if self._coerce_pk is coerce_int:
            fast = _digit_ids(raw_ids)
            if fast is not None:
                return fast
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

        In the database's fastest form (:mod:`jet_sqla.loading`): one
        ``pk = ANY(:ids)`` on PostgreSQL, chunked ``IN (…)`` elsewhere. With
        ``lock``, rows are read ``FOR UPDATE`` in primary-key order, so two
        actions locking overlapping rows cannot deadlock.
        """
        assert self.pk_attribute is not None and self.pk is not None, \
            'a composite primary key cannot be loaded by id'
        if self._pk_bits is not None:
            # An id past the key's type names no row, and PostgreSQL would refuse to bind it.
            dialect = session.get_bind(mapper=self.model).dialect.name
            ids = [value for value in ids if fits_integer_column(self._pk_bits, value, dialect)]
        return loading.iter_by_pk(session, self.model, self.pk_attribute, self.pk, ids, lock=lock)


def _digit_ids(raw_ids: Iterable[Any]) -> list[int] | None:
    """PERF: integer ids sent as ints or plain ASCII digits, coerced in one pass; ``None`` if any is not.

    Whatever this refuses goes through the full coercer, which explains the problem.
    """
    values = raw_ids if isinstance(raw_ids, (list, tuple)) else list(raw_ids)
    if all(type(raw) is int for raw in values):
        if values and not (INT_MIN <= min(values) and max(values) <= INT_MAX):
            return None
        return list(dict.fromkeys(values))
    # Up to 18 digits is always within the signed 64-bit range.
    if all(type(raw) is str and len(raw) <= 18 and raw.isascii() and raw.isdigit() for raw in values):
        return list(dict.fromkeys(map(int, values)))
    return None


def integer_range(column_type: sa.types.TypeEngine[Any]) -> tuple[int, int] | None:
    """The smallest and largest value an integer column type holds, or ``None`` for other types."""
    stored = storage_type(column_type)
    if isinstance(stored, sa.BigInteger):
        bits = 64
    elif isinstance(stored, sa.SmallInteger):
        bits = 16
    elif isinstance(stored, sa.Integer):
        bits = 32
    else:
        return None
    if getattr(stored, 'unsigned', False):  # MariaDB/MySQL
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def fits_integer_column(bounds: tuple[int, int] | None, value: Any, dialect: str) -> bool:
    """Whether ``value`` can be stored in an integer column of ``bounds`` on ``dialect``."""
    if bounds is None or not isinstance(value, int) or isinstance(value, bool):
        return True
    if dialect == 'sqlite':
        bounds = -(2**63), 2**63 - 1  # every SQLite INTEGER holds 64 bits, whatever the declared type
    return bool(bounds[0] <= value <= bounds[1])


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
