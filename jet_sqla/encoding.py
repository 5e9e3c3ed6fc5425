"""JSON in and out: one place that knows how values become bytes.

PERF: orjson is used when it is installed (``pip install jet-sqla[fast]``); it
encodes several times faster than the standard library. Both paths accept the
same values: Decimal, datetime, date, time, UUID and Enum become JSON scalars.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import uuid
from typing import Any

__all__ = ['DecodeError', 'dumps', 'dumps_canonical', 'loads']


class DecodeError(ValueError):
    """The bytes are not JSON, or nest too deeply."""


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f'{type(value).__name__} is not JSON serializable')


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(',', ':')).encode()


def _std_loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:  # stdlib recurses on deep nesting
        raise DecodeError(str(error)[:200]) from None


try:
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    dumps = _std_dumps
    loads = _std_loads
else:
    _ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS

    def dumps(value: Any) -> bytes:
        """``value`` as compact UTF-8 JSON."""
        try:
            return orjson.dumps(value, default=_default, option=_ORJSON_OPTIONS)
        except orjson.JSONEncodeError as error:
            raise TypeError(str(error)) from None

    def loads(data: bytes | str) -> Any:
        """Parse JSON; raises :class:`DecodeError` on bad or too deeply nested input."""
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise DecodeError(str(error)[:200]) from None


def dumps_canonical(value: Any) -> bytes:
    """Deterministic JSON (sorted keys), for hashing."""
    return json.dumps(value, default=_default, sort_keys=True, separators=(',', ':')).encode()
