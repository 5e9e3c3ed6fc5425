"""The handler-style API of the reference bridge: functions that answer messages by name.

Handlers registered with :func:`add_handler` apply to every bridge in the
process; ``bridge.messages.add_handler`` applies to one bridge only. Handlers
take ``(name, params)`` or ``(params)``. :mod:`jet_sqla.messages` re-exports
all of it, where the reference bridge's users look for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ['Handler', 'Handlers', 'add_handler', 'default_handlers', 'get_handler']

Handler = Callable[..., Any]


class Handlers:
    """Handler-style functions by message name."""

    def __init__(self, parent: Handlers | None = None) -> None:
        self._handlers: dict[str, Callable[[str, Any], Any]] = {}
        self._parent = parent

    def add_handler(self, message_name: str, func: Handler) -> None:
        """Answer ``message_name`` with ``func(name, params)`` or ``func(params)``."""
        self._handlers[message_name] = _adapt(func)

    def get_handler(self, message_name: str) -> Callable[[str, Any], Any] | None:
        handler = self._handlers.get(message_name)
        if handler is None and self._parent is not None:
            return self._parent.get_handler(message_name)
        return handler

    def clear(self) -> None:
        self._handlers.clear()


def _adapt(func: Handler) -> Callable[[str, Any], Any]:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return func
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    if len(positional) == 1 and not varargs:
        return lambda name, params: func(params)
    return func


#: Handlers for every bridge in the process.
default_handlers = Handlers()


def add_handler(message_name: str, func: Handler) -> None:
    """Register a handler for every bridge in the process (as the reference bridge did)."""
    default_handlers.add_handler(message_name, func)


def get_handler(message_name: str) -> Callable[[str, Any], Any] | None:
    return default_handlers.get_handler(message_name)
