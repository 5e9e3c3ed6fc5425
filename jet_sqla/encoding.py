"""JSON in and out: one place that knows how values become bytes.

PERF: orjson is used when it is installed (``pip install jet-sqla[fast]``); it
encodes several times faster than the standard library. Both paths accept the
same values: Decimal, datetime, date, time, UUID and Enum become JSON scalars.

``JET_SQLA_JSON`` picks the library, once, at import: ``auto`` (the default:
orjson when installed), ``orjson`` (fail if it is missing) or ``stdlib``
(never orjson: to compare the two, or to rule orjson out).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import os
import re
import uuid
from typing import Any

__all__ = ['BACKEND', 'DecodeError', 'dumps', 'dumps_canonical', 'dumps_str_keys', 'json_scalar', 'loads']

_CHOICES = ('auto', 'orjson', 'stdlib')


class DecodeError(ValueError):
    """The bytes are not JSON, or nest too deeply."""


def json_scalar(value: Any) -> Any:
    """The JSON form of a value that JSON has no type for: decimals, times, UUIDs, enums.

    Raises:
        TypeError: ``value`` is of none of those types.
    """
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f'{type(value).__name__} is not JSON serializable')


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return json_scalar(value)


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(',', ':')).encode()


#: The JSON escape of a UTF-16 surrogate (\ud800 to \udfff): paired it is fine, alone it is not text.
_SURROGATE_ESCAPE = re.compile(r'\\u[dD][89a-fA-F]')


def _std_loads(data: bytes | str) -> Any:
    # What orjson accepts and no more: strict UTF-8, no NaN or Infinity, no lone surrogates.
    try:
        text = data.decode('utf-8') if isinstance(data, (bytes, bytearray)) else data
        value = json.loads(text, parse_constant=_refuse_constant)
        if _SURROGATE_ESCAPE.search(text):
            _std_dumps(value)  # a lone surrogate cannot be encoded: refuse it here, not in a driver or the log
        return value
    except (ValueError, RecursionError) as error:  # stdlib recurses on deep nesting
        raise DecodeError(str(error)[:200]) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not JSON')


def _import_orjson(choice: str) -> Any:
    """The orjson module, or ``None`` when ``choice`` rules it out or it is not installed."""
    if choice not in _CHOICES:
        raise ValueError(f'JET_SQLA_JSON={choice!r}: expected one of {", ".join(_CHOICES)}')
    if choice == 'stdlib':
        return None
    try:
        import orjson
    except ImportError:
        if choice == 'orjson':
            raise ImportError('JET_SQLA_JSON=orjson but orjson is not installed: pip install orjson') from None
        return None
    return orjson


orjson = _import_orjson(os.environ.get('JET_SQLA_JSON', 'auto').strip().lower() or 'auto')

#: The JSON library in use: ``'orjson'`` or ``'stdlib'``.
BACKEND = 'stdlib' if orjson is None else 'orjson'

if orjson is None:
    dumps = _std_dumps
    dumps_str_keys = _std_dumps
    loads = _std_loads
else:
    _ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
    # PERF: OPT_NON_STR_KEYS sends every dict through orjson's slower path; it doubled the time a
    # page of 50 options took to encode.
    _STR_KEYS_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS

    def dumps(value: Any) -> bytes:
        """``value`` as compact UTF-8 JSON."""
        try:
            encoded: bytes = orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError as error:
            if 'exceeds 64-bit' in str(error):
                # Any JSON number is a value (a JWT's exp: 2**64): the standard library writes it.
                return _std_dumps(value)
            raise TypeError(str(error)) from None
        return encoded

    def dumps_str_keys(value: Any) -> bytes:
        """:func:`dumps`, faster when every dict key in ``value`` is a string (the same bytes either way)."""
        try:
            encoded: bytes = orjson.dumps(value, default=_default, option=_STR_KEYS_OPTIONS)
        except orjson.JSONEncodeError:  # a key that is not a string, or what dumps handles or reports
            return dumps(value)
        return encoded

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises :class:`DecodeError` on bad or too deeply nested input."""
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise DecodeError(str(error)[:200]) from None


def dumps_canonical(value: Any) -> bytes:
    """Deterministic JSON (sorted keys), for hashing."""
    return json.dumps(value, default=_default, sort_keys=True, separators=(',', ':')).encode()
