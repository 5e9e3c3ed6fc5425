"""``bridge.mount(app)``: serve jet_sqla inside the app a user already has.

A ``falcon.App`` gets the routes added; a Flask app, or a Starlette/FastAPI
app, gets jet_sqla's own Falcon app under the bridge's prefix. Frameworks are
recognised by their class, without importing them; the integration module of
the one found is imported then. Anything else is refused before the app, or
the bridge, is changed.
"""

from __future__ import annotations

from typing import Any, TypeVar

import falcon

from .. import http

__all__ = ['framework_of', 'mount']

AppT = TypeVar('AppT')


def framework_of(app: Any) -> str | None:
    """``'falcon'``, ``'falcon-asgi'``, ``'flask'``, ``'starlette'`` (FastAPI too), or ``None``."""
    for cls in type(app).__mro__:
        module, name = cls.__module__, cls.__name__
        if module.startswith('falcon.asgi') and name == 'App':
            return 'falcon-asgi'
        if module.split('.')[0] == 'flask' and name == 'Flask':
            return 'flask'
        if module == 'starlette.applications' and name == 'Starlette':
            return 'starlette'
    return 'falcon' if isinstance(app, falcon.App) else None


def mount_prefix(prefix: str) -> str:
    """The bridge's prefix as a mount point: ``'/api'``.

    Raises:
        ValueError: the prefix is empty; a mounted bridge needs a path of its own.
    """
    stripped = prefix.strip('/')
    if not stripped:
        raise ValueError("a bridge mounted in another app needs a prefix of its own (prefix='/api')")
    return '/' + stripped


def mount(bridge: Any, app: AppT) -> AppT:
    """Serve ``bridge`` in ``app``; see :meth:`jet_sqla.Bridge.mount`.

    Raises:
        TypeError: ``app`` is not an app jet_sqla knows how to join.
    """
    framework = framework_of(app)
    if framework == 'falcon':
        http.add_routes(app, **bridge._route_options())  # type: ignore[arg-type]
        return app
    if framework == 'flask':
        from .flask import mount_on_flask
        mount_on_flask(bridge, app)  # type: ignore[arg-type]
        return app
    if framework == 'starlette':
        from .starlette import mount_on_starlette
        mount_on_starlette(bridge, app)
        return app
    if framework == 'falcon-asgi':
        raise TypeError('bridge.mount() takes a WSGI falcon.App, not a falcon.asgi.App; '
                        'serve bridge.wsgi_app() beside it, or mount it on a Starlette app')
    raise TypeError(
        f'bridge.mount() takes a falcon.App, a Flask app, or a Starlette/FastAPI app, not {type(app).__name__}; '
        'for any other WSGI server, serve bridge.wsgi_app()'
    )
