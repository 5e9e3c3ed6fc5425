"""What a client asks of a select box: an :class:`OptionsQuery`, read and bounded from a message's params.

``form``, ``q``, ``limit``, ``offset`` and ``after`` are checked here, once, for
every kind of options source in :mod:`jet_sqla.options`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidParams

__all__ = [
    'DEFAULT_LIMIT',
    'MAX_LIMIT',
    'MAX_OFFSET',
    'MAX_SEARCH_LENGTH',
    'OptionsQuery',
    'parse_query',
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: The longest search term, in characters. A search is a label lookup; a long one is only a way
#: to make the database scan (a 100 KB term held a PostgreSQL backend for 22 s).
MAX_SEARCH_LENGTH = 200
#: The largest ``offset``: PostgreSQL binds it as a 32-bit integer.
MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True, slots=True)
class OptionsQuery:
    """What a client asked of a select box.

    Attributes:
        form: The other values of the form, which options may depend on.
        q: A search term, matched case-insensitively.
        limit: At most this many options (1 to :data:`MAX_LIMIT`).
        offset: Skip this many.
        after: Keyset paging: only values after this one.
    """

    form: Mapping[str, Any] = field(default_factory=dict)
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    after: Any = None
    actor: Mapping[str, Any] | None = None


def parse_query(params: Mapping[str, Any], actor: Mapping[str, Any] | None = None, *,
                max_search_length: int = MAX_SEARCH_LENGTH) -> OptionsQuery:
    """Read ``form``, ``q``, ``limit``, ``offset`` and ``after`` from a message's params.

    Raises:
        InvalidParams: naming every bad one.
    """
    errors: dict[str, str] = {}
    form = params.get('form') or {}
    if not isinstance(form, Mapping):
        errors['form'] = 'expected an object'
        form = {}
    q = params.get('q')
    if q is not None and not isinstance(q, str):
        errors['q'] = 'expected a string'
    elif q is not None and '\x00' in q:
        errors['q'] = 'must not contain NUL characters'
    elif q is not None and len(q) > max_search_length:
        errors['q'] = f'at most {max_search_length} characters, got {len(q)}'
    limit = _bounded_int(params.get('limit'), DEFAULT_LIMIT, 1, MAX_LIMIT, 'limit', errors)
    offset = _bounded_int(params.get('offset'), 0, 0, MAX_OFFSET, 'offset', errors)
    if errors:
        raise InvalidParams(errors)
    return OptionsQuery(form=form, q=q or None, limit=limit, offset=offset, after=params.get('after'), actor=actor)


def _bounded_int(raw: Any, default: int, low: int, high: int, name: str, errors: dict[str, str]) -> int:
    if raw is None or raw == '':
        return default
    if isinstance(raw, bool):
        errors[name] = 'expected an integer'
        return default
    try:
        number = int(raw)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an infinite float
        errors[name] = 'expected an integer'
        return default
    if isinstance(raw, float) and not raw.is_integer():
        errors[name] = 'expected an integer'
        return default
    if not low <= number <= high:
        errors[name] = f'must be between {low} and {high}'
        return default
    return number
