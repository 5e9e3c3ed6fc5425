"""Choices for select boxes: derived from Enum and foreign-key columns, or user-provided.

A *source* answers ``options(session, request)`` with a list of :class:`Option`.
Enum sources are computed once; foreign-key sources run one ``SELECT … LIMIT``
per request; custom sources call the user's function with the arguments it
asks for by name. What a client asks (:class:`OptionsQuery`) is read in
:mod:`jet_sqla.options_query`.
"""

from __future__ import annotations

import enum
import inspect
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .catalog import Catalog
from .coerce import coercer_for_python_type
from .collection import Collection, fits_integer_column, integer_range, storage_type
from .colors import PALETTE, ColorsByValue, cached_color, distinct_colors, stable_color
from .errors import InvalidParams
from .options_query import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_SEARCH_LENGTH,
    OptionsQuery,
    parse_query,
)

__all__ = [
    # The limits, OptionsQuery and parse_query are re-exported from options_query.py, where they moved.
    'DEFAULT_LIMIT',
    'MAX_LIMIT',
    'MAX_OFFSET',
    'MAX_SEARCH_LENGTH',
    'PALETTE',  # re-exported from colors.py, where it moved
    'CustomOptions',
    'EnumOptions',
    'ForeignKeyOptions',
    'Option',
    'OptionsQuery',
    'OptionsSource',
    'column_options',
    'composite_foreign_key',
    'distinct_colors',
    'humanize',
    'parse_query',
    'stable_color',
]


@dataclass(frozen=True, slots=True)
class Option:
    """One choice of a select box.

    Attributes:
        value: What is submitted, and what the database stores.
        name: The label the operator reads.
        color: A Jet color name; derived from ``value`` when not given.
    """

    value: Any
    name: str
    color: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            'value': self.value,
            'name': self.name,
            'color': self.color if self.color is not None else stable_color(self.value),
        }

    @classmethod
    def of(cls, item: Option | Mapping[str, Any] | Sequence[Any] | Any) -> Option:
        """Accept an ``Option``, a ``{"value", "name", "color"}`` mapping, a tuple, or a bare value."""
        if isinstance(item, Option):
            return item
        if isinstance(item, Mapping):
            return cls(item['value'], str(item.get('name', item['value'])), item.get('color'))
        if isinstance(item, (tuple, list)):
            return cls(*item)
        return cls(item, str(item))


_WORD_BREAK = re.compile(r'[_\-\s]+|(?<=[a-z0-9])(?=[A-Z])')


def humanize(text: str) -> str:
    """``'IN_PROGRESS'`` or ``'inProgress'`` -> ``'In progress'``."""
    words = [word for word in _WORD_BREAK.split(str(text)) if word]
    phrase = ' '.join(words).lower()
    return phrase[:1].upper() + phrase[1:] if phrase else str(text)


class OptionsSource:
    """Answers the options of one field.

    ``needs_session``: ``options()`` is given an ORM session. ``needs_connection``:
    it is given a connection (enough for a Core SELECT, and cheaper). Neither: ``None``.
    """

    needs_session = False
    needs_connection = False

    def options(self, session: Session | sa.Connection | None, query: OptionsQuery) -> list[Option]:
        raise NotImplementedError

    def answer(self, session: Session | sa.Connection | None, query: OptionsQuery) -> list[dict[str, Any]]:
        """The options as ``get_field_options`` sends them: ``{"value", "name", "color"}`` each."""
        return [option.to_dict() for option in self.options(session, query)]

    def static(self) -> list[Option] | None:
        """Options known without a request, sent in the action list; ``None`` if dynamic."""
        return None


class EnumOptions(OptionsSource):
    """The members of an Enum, computed once."""

    def __init__(self, options: Sequence[Option]) -> None:
        self._options = list(options)

    @classmethod
    def from_enum_class(cls, enum_class: type[enum.Enum]) -> EnumOptions:
        """Options for a Python ``Enum`` param: the value is the member's value.

        The label and color of each member are those its Enum column gets
        (:meth:`from_column_type`); only the value differs, as each side accepts.
        """
        members = list(enum_class)
        return cls.labelled([_wire_value(member) for member in members], [member.name for member in members])

    @classmethod
    def from_column_type(cls, column_type: sa.Enum) -> EnumOptions:
        """Options for an Enum column: the value is exactly what the database stores."""
        enum_class = column_type.enum_class
        if enum_class is not None:
            # .enums lists the stored values in the members' order, names or values_callable's.
            return cls.labelled(list(column_type.enums), [member.name for member in enum_class])
        return cls.labelled(list(column_type.enums), list(column_type.enums))

    @classmethod
    def labelled(cls, values: Sequence[Any], names: Sequence[str]) -> EnumOptions:
        """One option per value, labelled and colored from its member's name, so that one member
        reads and looks the same wherever its enum appears."""
        colors = distinct_colors(names)
        return cls([Option(value, humanize(name), color) for value, name, color in zip(values, names, colors, strict=True)])

    def static(self) -> list[Option]:
        return list(self._options)

    def options(self, session: Session | sa.Connection | None, query: OptionsQuery) -> list[Option]:
        found = self._options
        if query.q:
            needle = query.q.casefold()
            found = [o for o in found if needle in o.name.casefold() or needle in str(o.value).casefold()]
        return found[query.offset : query.offset + query.limit]


def _wire_value(member: enum.Enum) -> Any:
    value = member.value
    return value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else member.name


class ForeignKeyOptions(OptionsSource):
    """Rows of a related collection: ``value`` is the key, ``name`` the row's label.

    Each request runs one ``SELECT value, label … ORDER BY value LIMIT n``; a
    table of millions of rows is never loaded whole. ``after`` pages by key
    instead of by offset, which stays fast on deep pages.
    """

    needs_connection = True

    def __init__(self, related: Collection, value_column: sa.Column[Any] | None = None) -> None:
        self.related = related
        column = value_column if value_column is not None else related.pk
        if column is None:
            raise ValueError(f'{related.name!r} has a composite primary key; it cannot back a foreign key field')
        self.value_column: sa.Column[Any] = column
        self._value_bits = integer_range(column.type)
        # ``after`` is a value of the referenced column, which need not be the primary key.
        self._coerce_after = related.coerce_id if column is related.pk else _column_coercer(column)
        label = related.label
        # The model's attributes, not the table's columns: an ORM statement, which a session's
        # do_orm_execute filters (soft delete, tenants) apply to; a plain connection runs it alike.
        value_attribute = getattr(related.model, related.attribute_name(column))
        label_attribute = getattr(related.model, related.attribute_name(label))
        searchable = (label_attribute if isinstance(storage_type(label.type), sa.String)
                      else sa.cast(label_attribute, sa.String))
        page = (
            sa.select(value_attribute, label_attribute).order_by(value_attribute)
            .limit(sa.bindparam('limit', type_=sa.Integer)).offset(sa.bindparam('offset', type_=sa.Integer))
        )
        search = searchable.ilike(sa.bindparam('pattern', type_=sa.String), escape=_ESCAPE)
        after = value_attribute > sa.bindparam('after')  # typed by the attribute it is compared with
        # PERF: the four statements are built once; a request only binds its values, and
        # SQLAlchemy's compiled cache finds them without building a new statement to key.
        self._statements = {
            (False, False): page, (True, False): page.where(search),
            (False, True): page.where(after), (True, True): page.where(search, after),
        }
        # CHAR pads its values with spaces; a label is read without them.
        self._trim = isinstance(storage_type(label.type), sa.CHAR)
        self._color: Callable[[Any], str] = (ColorsByValue().__getitem__ if _written_alike(column)
                                             else cached_color)

    def options(self, session: Session | sa.Connection | None, query: OptionsQuery) -> list[Option]:
        return [Option(value, label) for value, label in self._labelled(self._page(session, query))]

    def answer(self, session: Session | sa.Connection | None, query: OptionsQuery) -> list[dict[str, Any]]:
        # PERF: the dicts straight from the rows, with no Option and to_dict() in between, and each
        # color looked up by value (see ColorsByValue): a page of 50 took 23 µs of Python, now 5 µs.
        rows: Sequence[tuple[Any, Any]] = self._page(session, query)
        if self._trim:
            rows = self._labelled(rows)
        try:
            return _wire_options(rows, self._color)
        except TypeError:  # an unhashable key, which the cache cannot hold
            return _wire_options(rows, stable_color)

    def _page(self, session: Session | sa.Connection | None, query: OptionsQuery) -> Sequence[tuple[Any, Any]]:
        """The page's ``(value, label)`` rows, as the database returns them."""
        assert session is not None
        values: dict[str, Any] = {'limit': query.limit, 'offset': query.offset}
        if query.q:
            values['pattern'] = f'%{_escape_like(query.q)}%'
        if query.after is not None:
            try:
                values['after'] = self._coerce_after(query.after)
            except ValueError as error:
                raise InvalidParams({'after': str(error)}) from None
            dialect = (session.get_bind(mapper=self.related.model) if isinstance(session, Session)
                       else session).dialect.name
            if not fits_integer_column(self._value_bits, values['after'], dialect):
                # Past the column's type: nothing comes after its largest value, everything after its smallest.
                if values.pop('after') > 0:
                    return []
        statement = self._statements[bool(query.q), 'after' in values]
        # PERF: .all() fetches the page at once; iterating the result fetched it row by row.
        return session.execute(statement, values).all()

    def _labelled(self, rows: Sequence[tuple[Any, Any]]) -> list[tuple[Any, str]]:
        """``(value, label)`` pairs; a row with no label is named by its value."""
        if self._trim:
            return [(value, str(label).rstrip() if label is not None else str(value)) for value, label in rows]
        return [(value, str(label) if label is not None else str(value)) for value, label in rows]


def _wire_options(rows: Sequence[tuple[Any, Any]], color: Callable[[Any], str]) -> list[dict[str, Any]]:
    return [{'value': value, 'name': str(label) if label is not None else str(value), 'color': color(value)}
            for value, label in rows]


def _written_alike(column: sa.Column[Any]) -> bool:
    """Whether equal values of ``column`` are written alike, so that a color may be remembered by value."""
    column_type = column.type
    if isinstance(column_type, sa.types.TypeDecorator):
        return False  # its values are whatever process_result_value makes of them
    try:
        return column_type.python_type in (int, str, uuid.UUID)
    except NotImplementedError:
        return False


def _column_coercer(column: sa.Column[Any]) -> Any:
    try:
        python_type = storage_type(column.type).python_type
    except NotImplementedError:
        python_type = str
    return coercer_for_python_type(python_type if isinstance(python_type, type) else str)


_ESCAPE = '/'


def _escape_like(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern: its wildcards and the escape character escaped."""
    return text.replace(_ESCAPE, _ESCAPE * 2).replace('%', _ESCAPE + '%').replace('_', _ESCAPE + '_')


#: The arguments a custom options function may ask for, by name.
CUSTOM_ARGUMENTS = ('form', 'q', 'limit', 'offset', 'after', 'session', 'actor')


class CustomOptions(OptionsSource):
    """A user's function. It receives, by name, whichever of :data:`CUSTOM_ARGUMENTS` it declares."""

    def __init__(self, function: Callable[..., Iterable[Any]]) -> None:
        self.function = function
        parameters = inspect.signature(function).parameters
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        self._arguments = tuple(name for name in CUSTOM_ARGUMENTS if takes_all or name in parameters)
        unknown = [
            name
            for name, parameter in parameters.items()
            if name not in CUSTOM_ARGUMENTS
            and parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
            and parameter.default is inspect.Parameter.empty
        ]
        if unknown:
            raise TypeError(
                f'options function {function.__qualname__} asks for {", ".join(unknown)}; '
                f'it may take only {", ".join(CUSTOM_ARGUMENTS)}'
            )
        self.needs_session = 'session' in self._arguments

    def options(self, session: Session | sa.Connection | None, query: OptionsQuery) -> list[Option]:
        available = {
            'form': dict(query.form),
            'q': query.q,
            'limit': query.limit,
            'offset': query.offset,
            'after': query.after,
            'session': session,
            'actor': query.actor,
        }
        result = self.function(**{name: available[name] for name in self._arguments})
        return [Option.of(item) for item in result]


def column_options(catalog: Catalog, collection: Collection, column: sa.Column[Any]) -> OptionsSource | None:
    """The options a column gets with no user code: Enum members, or related rows."""
    if isinstance(column.type, sa.Enum):
        return EnumOptions.from_column_type(column.type)
    for foreign_key in column.foreign_keys:
        if foreign_key.constraint is not None and len(foreign_key.constraint.columns) > 1:
            # One column of a composite key: its values alone name no row, so it gets no options.
            return None
        referenced = foreign_key.column
        if not isinstance(referenced.table, sa.Table):
            continue
        related = catalog.for_table(referenced.table)
        if related is not None and len(column.foreign_keys) == 1:
            return ForeignKeyOptions(related, referenced)
    return None


def composite_foreign_key(collection: Collection, field: str) -> str | None:
    """The columns of the composite foreign key ``field`` belongs to (``'a, b'``), or ``None``."""
    column = collection.column_named(field)
    for foreign_key in column.foreign_keys if column is not None else ():
        constraint = foreign_key.constraint
        if constraint is not None and len(constraint.columns) > 1:
            return ', '.join(collection.attribute_name(each) for each in constraint.columns)
    return None
