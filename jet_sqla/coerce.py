"""Raw JSON values -> Python values, strictly.

Each coercer takes what a client sent and returns the Python value, or raises
``ValueError`` with a reason fit to show the operator. Ids and form values are
coerced by the same functions.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any

__all__ = [
    'Coercer',
    'coerce_bool',
    'coerce_date',
    'coerce_datetime',
    'coerce_decimal',
    'coerce_float',
    'coerce_int',
    'coerce_json',
    'coerce_str',
    'coerce_time',
    'coerce_timestamp',
    'coerce_uuid',
    'coercer_for_python_type',
    'enum_coercer',
]

Coercer = Callable[[Any], Any]

# Values outside a signed 64-bit integer cannot be stored by any of the
# supported databases; refusing them here keeps driver overflow errors (500s)
# away from clients.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_INT_PATTERN = re.compile(r'[+-]?\d{1,20}')
# Decimal accepts '1e999999999'; arithmetic on it can take unbounded time.
_DECIMAL_MAX_EXPONENT = 1000

_TRUE = frozenset({'true', '1', 'yes', 'on', 't', 'y'})
_FALSE = frozenset({'false', '0', 'no', 'off', 'f', 'n'})


def _type_name(value: Any) -> str:
    return {dict: 'an object', list: 'a list', bool: 'a boolean', type(None): 'null'}.get(
        type(value), type(value).__name__
    )


def coerce_str(value: Any) -> str:
    """A string; numbers are accepted as their text. NUL characters are refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, decimal.Decimal)):
        raise ValueError(f'expected a string, got {_type_name(value)}')
    text = value if isinstance(value, str) else str(value)
    if '\x00' in text:
        raise ValueError('must not contain NUL characters')
    return text


def coerce_int(value: Any) -> int:
    """An integer from an int or a string of digits, within the signed 64-bit range."""
    if isinstance(value, bool):
        raise ValueError('expected an integer, got a boolean')
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INT_PATTERN.fullmatch(value.strip()):
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise ValueError(f'{_short(value)} is not a valid integer')
    if not INT_MIN <= number <= INT_MAX:
        raise ValueError(f'{number} is out of range')
    return number


def coerce_float(value: Any) -> float:
    """A finite float from a number or a numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f'expected a number, got {_type_name(value)}')
    if isinstance(value, str) and '_' in value:  # float() takes '1_000'; JSON and operators don't
        raise ValueError(f'{_short(value)} is not a valid number')
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f'{_short(value)} is not a valid number') from None
    if not math.isfinite(number):
        raise ValueError('must be a finite number')
    return number


def coerce_decimal(value: Any) -> decimal.Decimal:
    """An exact decimal. Strings keep every digit: ``'12.30'`` stays ``Decimal('12.30')``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, decimal.Decimal)):
        raise ValueError(f'expected a decimal number, got {_type_name(value)}')
    # PERF/exactness: a float goes through repr, so 0.1 becomes Decimal('0.1').
    text = repr(value) if isinstance(value, float) else str(value).strip()
    try:
        if '_' in text:  # Decimal() takes '1_000'; JSON and operators don't
            raise decimal.InvalidOperation
        number = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(f'{_short(value)} is not a valid decimal number') from None
    if not number.is_finite() or abs(number.adjusted()) > _DECIMAL_MAX_EXPONENT:
        raise ValueError('must be a finite decimal number of reasonable size')
    return number


def coerce_bool(value: Any) -> bool:
    """A boolean from true/false, 1/0, or the usual words ('yes', 'off', …)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f'{_short(value)} is not a valid boolean')


def _from_iso(value: Any, kind: str, parse: Callable[[str], Any]) -> Any:
    if not isinstance(value, str):
        raise ValueError(f'expected an ISO 8601 {kind} string, got {_type_name(value)}')
    try:
        return parse(value.strip())
    except ValueError:
        raise ValueError(f'{_short(value)} is not a valid ISO 8601 {kind}') from None


def coerce_datetime(value: Any) -> datetime.datetime:
    """An ISO 8601 datetime; an aware value stays aware, a naive one stays naive."""
    moment: datetime.datetime = _from_iso(value, 'datetime', datetime.datetime.fromisoformat)
    return moment


def coerce_timestamp(value: Any) -> datetime.datetime:
    """Seconds since the epoch (a number), or an ISO 8601 datetime; always aware (UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f'{_short(value)} is not a valid timestamp') from None
    moment = coerce_datetime(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)


def coerce_date(value: Any) -> datetime.date:
    """An ISO 8601 date (``2024-05-01``)."""
    day: datetime.date = _from_iso(value, 'date', datetime.date.fromisoformat)
    return day


def coerce_time(value: Any) -> datetime.time:
    """An ISO 8601 time (``13:45`` or ``13:45:10+02:00``)."""
    moment: datetime.time = _from_iso(value, 'time', datetime.time.fromisoformat)
    return moment


def coerce_uuid(value: Any) -> uuid.UUID:
    """A UUID from its string form."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(coerce_str(value))
    except ValueError:
        raise ValueError(f'{_short(value)} is not a valid UUID') from None


def coerce_json(value: Any, expected: type | None = None) -> Any:
    """A JSON value; a string holding JSON is decoded. ``expected`` checks dict or list."""
    if isinstance(value, str):
        try:
            value = json.loads(value, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise ValueError('is not valid JSON') from None
    if expected is not None and not isinstance(value, expected):
        wanted = 'an object' if expected is dict else 'a list'
        raise ValueError(f'expected {wanted}, got {_type_name(value)}')
    return value


def _refuse_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON and cannot be stored or sent back.
    raise ValueError(name)


def enum_coercer(enum_class: type[enum.Enum]) -> Coercer:
    """A coercer that accepts a member's value, or its name, and returns the member."""
    by_value: dict[Any, enum.Enum] = {member.value: member for member in enum_class}
    by_text: dict[Any, enum.Enum] = {str(member.value): member for member in enum_class}
    by_name: dict[Any, enum.Enum] = dict(enum_class.__members__)

    def coerce(value: Any) -> enum.Enum:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            for table in (by_value, by_text, by_name):
                member = table.get(value)
                if member is not None:
                    return member
        allowed = ', '.join(repr(member.value) for member in enum_class)
        raise ValueError(f'{_short(value)} is not one of {allowed}')

    return coerce


_PYTHON_COERCERS: tuple[tuple[type, Coercer], ...] = (
    (bool, coerce_bool),
    (int, coerce_int),
    (float, coerce_float),
    (decimal.Decimal, coerce_decimal),
    (str, coerce_str),
    (datetime.datetime, coerce_datetime),
    (datetime.date, coerce_date),
    (datetime.time, coerce_time),
    (uuid.UUID, coerce_uuid),
)


def coercer_for_python_type(python_type: type) -> Coercer:
    """The coercer for ``python_type``; values of unknown types pass through as strings."""
    if issubclass(python_type, enum.Enum):
        return enum_coercer(python_type)
    if issubclass(python_type, (dict, list)):
        return lambda value: coerce_json(value, python_type)
    for candidate, coercer in _PYTHON_COERCERS:
        if issubclass(python_type, candidate):
            return coercer
    return coerce_str


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + '...'
