"""The 16 Jet field types, and how SQLAlchemy types and Python types map to them."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from typing import Any

import sqlalchemy as sa

__all__ = ['Field', 'field_for_column_type', 'field_for_python_type']


class Field(str, enum.Enum):
    """A Jet form field type. The value is the name sent on the wire."""

    BOOLEAN = 'BooleanField'
    TRANSLATABLE = 'TranslatableField'
    SELECT = 'SelectField'
    FOREIGN_KEY = 'ForeignKey'
    DATETIME = 'DateTimeField'
    TIMESTAMP = 'TimestampField'
    DATE = 'DateField'
    TIME = 'TimeField'
    JSON = 'JSONField'
    SQL = 'SqlField'
    CODE = 'CodeField'
    CHAR = 'CharField'
    TEXT = 'TextField'
    INTEGER = 'IntegerField'
    FLOAT = 'FloatField'
    DECIMAL = 'DecimalField'

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | Field) -> Field:
        """Accept a member, its wire name (``'TextField'``) or its member name (``'TEXT'``).

        Raises:
            ValueError: ``value`` names no field type.
        """
        if isinstance(value, Field):
            return value
        try:
            return cls(value)
        except ValueError:
            try:
                return cls[str(value).upper()]
            except KeyError:
                names = ', '.join(member.value for member in cls)
                raise ValueError(f'unknown field type {value!r}; expected one of {names}') from None


# Order matters: an Enum may also be a str or an int (StrEnum, IntEnum, ``class X(str, Enum)``),
# bool is an int, datetime is a date.
_PYTHON_FIELDS: tuple[tuple[type, Field], ...] = (
    (enum.Enum, Field.SELECT),
    (bool, Field.BOOLEAN),
    (int, Field.INTEGER),
    (float, Field.FLOAT),
    (decimal.Decimal, Field.DECIMAL),
    (str, Field.CHAR),
    (uuid.UUID, Field.CHAR),
    (datetime.datetime, Field.DATETIME),
    (datetime.date, Field.DATE),
    (datetime.time, Field.TIME),
    (dict, Field.JSON),
    (list, Field.JSON),
)


def field_for_python_type(python_type: type) -> Field | None:
    """The field for a plain Python type, or ``None`` when there is none."""
    for candidate, field in _PYTHON_FIELDS:
        if isinstance(python_type, type) and issubclass(python_type, candidate):
            return field
    return None


# Order matters: Enum and Text are Strings, Float is a Numeric.
_COLUMN_FIELDS: tuple[tuple[type[sa.types.TypeEngine[Any]], Field], ...] = (
    (sa.Enum, Field.SELECT),
    (sa.Boolean, Field.BOOLEAN),
    (sa.Integer, Field.INTEGER),
    (sa.Float, Field.FLOAT),
    (sa.Numeric, Field.DECIMAL),
    (sa.DateTime, Field.DATETIME),
    (sa.Date, Field.DATE),
    (sa.Time, Field.TIME),
    (sa.JSON, Field.JSON),
    (sa.Text, Field.TEXT),
    (sa.String, Field.CHAR),
)


def field_for_column_type(column_type: sa.types.TypeEngine[object]) -> Field:
    """The field for a column's SQLAlchemy type; CharField when nothing fits.

    A ``TypeDecorator`` (SQLModel's ``AutoString``…) gets the field of the type it stores.
    """
    while isinstance(column_type, sa.types.TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, sa.Numeric) and not isinstance(column_type, sa.Float):
        return Field.FLOAT if not column_type.asdecimal else Field.DECIMAL
    for candidate, field in _COLUMN_FIELDS:
        if isinstance(column_type, candidate):
            return field
    return Field.CHAR
