"""Reading a JSON error body without depending on its exact shape.

The error body may carry its reason as ``description``, ``detail`` or
``error`` and its code as ``code`` or ``error_code``, depending on the shape
the client negotiated; tests that only care about the code and the reason
read them through these helpers.
"""

from __future__ import annotations

from typing import Any

__all__ = ['error_code', 'error_message']


def error_code(body: Any) -> str | None:
    """The body's stable machine-readable code."""
    if not isinstance(body, dict):
        return None
    for key in ('code', 'error_code'):
        if isinstance(body.get(key), str):
            return str(body[key])
    return None


def error_message(body: Any) -> str:
    """The body's human-readable reason."""
    if not isinstance(body, dict):
        return ''
    for key in ('description', 'detail', 'error', 'title'):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return ''
