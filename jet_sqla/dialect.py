"""The shapes of an ``execute_action`` that Jet Admin's own client sends.

The documented message carries the ids inside the form::

    {"name": "refund", "model": "orders", "params": {"ids": "3,1", "amount": "5"}}

Jet Admin's client puts them beside it, and adds "select all"::

    {"name": "refund", "model": "orders", "ids": [3, 1], "inverseIds": false, "params": {"amount": "5"}}
    {"name": "promote", "model": "users", "id": 7, "params": {}}

:func:`read_execute_params` accepts both: ids found beside the form are moved
into it, where the executor reads them, after checking that they agree with
any ids the form carries itself. ``inverseIds`` (or ``inverse_ids``) is read
as a strict boolean. What "select all" then selects is :mod:`jet_sqla.selection`.

:func:`decode_params` reads ``params`` (an object, or a string holding JSON as
the reference accepted, nested no deeper than :data:`MAX_DEPTH`), and
:func:`read_dry_run` the ``dry_run`` flag beside ``name`` or inside the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import encoding
from .coerce import coerce_bool
from .errors import InvalidParams, MessageError

__all__ = [
    'ID_KEYS', 'INVERSE_KEYS', 'MAX_DEPTH', 'decode_params', 'read_dry_run', 'read_execute_params', 'read_inverse',
]

#: The keys that carry a request's ids, beside the form or inside it.
ID_KEYS = ('ids', 'id')
#: The keys of "select all": Jet Admin's client spelling, then the snake-case one.
INVERSE_KEYS = ('inverseIds', 'inverse_ids')

#: How deeply a message's params may nest. Jet's forms nest a few levels; a deeper body is hostile,
#: and past about 250 levels the JSON encoders of the audit log, of drivers and of user code fail.
MAX_DEPTH = 64

_BESIDE_KEYS = frozenset(ID_KEYS + INVERSE_KEYS)
_TRUE = frozenset({'true'})
_FALSE = frozenset({'false', ''})


def read_execute_params(params: Mapping[str, Any], form: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The form with the request's ids in it, and whether the request means "all but these ids".

    Args:
        params: The execute_action's params: ``name``, ``model``, maybe ``ids``/``id`` and ``inverseIds``.
        form: Its decoded ``params.params``.

    Raises:
        InvalidParams: ids beside the form and inside it that name different records
            (reported under ``ids``), or an ``inverseIds`` that is not a boolean.
    """
    merged = dict(form)
    if params.keys().isdisjoint(_BESIDE_KEYS):  # PERF: the documented shape, nothing beside the form to merge
        _check_id_and_ids(form, 'in the form')
        return merged, False
    _check_id_and_ids(params, 'beside the form')
    _check_id_and_ids(form, 'in the form')
    beside = _given_ids(params)
    if beside is not None:
        inside = _given_ids(form)
        if inside is None:
            key, value = beside
            merged[key] = value
        elif _id_set(beside[1]) != _id_set(inside[1]):
            raise InvalidParams({'ids': f'the ids beside the form ({_shown(beside[1])}) and in it '
                                        f'({_shown(inside[1])}) differ; send them once'})
    return merged, read_inverse(params)


def read_inverse(params: Mapping[str, Any]) -> bool:
    """``inverseIds``/``inverse_ids`` as a boolean: ``true``/``"true"`` selects every record but the ids.

    Raises:
        InvalidParams: a value that is neither true nor false, or the two spellings disagreeing.
    """
    found: list[bool] = []
    for key in INVERSE_KEYS:
        if key in params:
            found.append(_boolean(key, params[key]))
    if len(set(found)) > 1:
        raise InvalidParams({INVERSE_KEYS[0]: 'inverseIds and inverse_ids disagree; send one of them'})
    return bool(found) and found[0]


def _boolean(key: str, value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    raise InvalidParams({key: f'expected true or false, got {str(value)[:50]!r}'})


def _check_id_and_ids(source: Mapping[str, Any], where: str) -> None:
    # Both keys in one place would otherwise be read as "ids", and the "id" silently dropped.
    ids, id_ = source.get('ids'), source.get('id')
    if ids not in (None, '') and id_ not in (None, '') and _id_set(ids) != _id_set(id_):
        raise InvalidParams({'ids': f'"id" ({_shown(id_)}) and "ids" ({_shown(ids)}) {where} '
                                    'differ; send one of them'})


def _given_ids(source: Mapping[str, Any]) -> tuple[str, Any] | None:
    for key in ID_KEYS:
        value = source.get(key)
        if value is not None and value != '':
            return key, value
    return None


def _id_set(value: Any) -> frozenset[str]:
    """The ids of a value as text, so that ``"1,2"``, ``[2, 1]`` and ``["1", 2]`` name the same records."""
    if isinstance(value, str):
        parts: list[Any] = value.split(',')
    elif isinstance(value, list):
        parts = value
    else:
        parts = [value]
    return frozenset(text for text in (_id_text(part) for part in parts) if text)


def _id_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _shown(value: Any) -> str:
    text = ','.join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 60 else text[:57] + '...'


def decode_params(value: Any, where: str) -> dict[str, Any]:
    """``params`` as an object; a string holding JSON is decoded, as the reference did."""
    if value is None or value == '':
        return {}
    if isinstance(value, str):
        try:
            value = encoding.loads(value)
        except encoding.DecodeError:
            raise MessageError(f'"{where}" is a string but not valid JSON', code='invalid_params') from None
    if not isinstance(value, dict):
        raise MessageError(f'"{where}" must be an object', code='invalid_params')
    if _nests_deeper(value, MAX_DEPTH):
        raise MessageError(f'"{where}" nests deeper than {MAX_DEPTH} levels', code='too_deep')
    return value


def _nests_deeper(value: dict[str, Any] | list[Any], limit: int) -> bool:
    """Whether objects and lists nest more than ``limit`` levels; iterative, so no depth can overflow it."""
    # PERF: level by level, with plain loops: a flat object (most messages) is one pass over its values.
    level: list[dict[str, Any] | list[Any]] = [value]
    depth = 1
    while level:
        if depth > limit:
            return True
        below: list[dict[str, Any] | list[Any]] = []
        for container in level:
            for child in (container.values() if isinstance(container, dict) else container):
                if isinstance(child, (dict, list)):
                    below.append(child)
        level = below
        depth += 1
    return False


def read_dry_run(params: Mapping[str, Any], form: Mapping[str, Any]) -> bool:
    """``dry_run`` beside ``name``, or inside the form: a boolean, or its usual spellings."""
    raw = params.get('dry_run', form.get('dry_run'))
    if raw is None or raw is False:
        return False
    try:
        return coerce_bool(raw)
    except ValueError:
        raise InvalidParams({'dry_run': 'expected true or false'}) from None
