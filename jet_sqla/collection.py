"""One mapped table as Jet sees it: its primary key's coercion and loading by id.

A :class:`Collection` coerces raw ids to its key's Python type (unsigned and
integer-range aware), and loads instances by id in the database's fastest form
(:mod:`jet_sqla.loading`). Building collections from models, registries and
MetaData, and naming them, is :mod:`jet_sqla.catalog`'s work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session

from . import loading
from .coerce import INT_MAX, INT_MIN, Coercer, coerce_int, coercer_for_python_type
from .errors import InvalidParams

__all__ = [
    'CHUNK_SIZE',
    'UINT64_MAX',
    'Collection',
    'fits_integer_column',
    'integer_range',
    'storage_type',
]

#: Ids per ``SELECT … WHERE pk IN (…)`` where no faster form is known (see :mod:`jet_sqla.loading`).
CHUNK_SIZE = loading.DEFAULT_CHUNK


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
        if self._pk_bits is not None and ids:
            # An id past the key's type names no row, and PostgreSQL would refuse to bind it.
            dialect = session.get_bind(mapper=self.model).dialect.name
            if not _all_fit(self._pk_bits, ids, dialect):
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


def _all_fit(bounds: tuple[int, int], ids: Sequence[Any], dialect: str) -> bool:
    """PERF: whether every id fits, by one ``min`` and one ``max`` (in C), not a call per id.

    The ids are coerced to the key's type: ints. Extremes that are not ints (a
    bool, values that do not compare) answer ``False``, and each id is then
    checked; a non-int between two ints needs no check (only ints can overflow).
    """
    try:
        low, high = min(ids), max(ids)
    except TypeError:
        return False
    if type(low) is not int or type(high) is not int:  # a bool's type is not int either
        return False
    return fits_integer_column(bounds, low, dialect) and fits_integer_column(bounds, high, dialect)


def fits_integer_column(bounds: tuple[int, int] | None, value: Any, dialect: str) -> bool:
    """Whether ``value`` can be stored in an integer column of ``bounds`` on ``dialect``."""
    if bounds is None or not isinstance(value, int) or isinstance(value, bool):
        return True
    if dialect == 'sqlite':
        bounds = -(2**63), 2**63 - 1  # every SQLite INTEGER holds 64 bits, whatever the declared type
    return bool(bounds[0] <= value <= bounds[1])
