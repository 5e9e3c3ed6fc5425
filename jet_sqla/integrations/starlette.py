"""Starlette and FastAPI: ``bridge.mount(app)`` serves jet_sqla under the bridge's prefix.

jet_sqla's Falcon (WSGI) app is mounted through a2wsgi, which runs each
request in a worker thread: actions stay plain ``def`` functions on a sync
engine, and the app's event loop is never blocked by them.
"""

from __future__ import annotations

from typing import Any

from .. import http
from .mounting import mount_prefix

__all__ = ['mount_on_starlette']


def mount_on_starlette(bridge: Any, app: Any) -> None:
    """Mount ``bridge`` under its prefix on a Starlette or FastAPI ``app``.

    Raises:
        ImportError: a2wsgi is not installed; the message names the extra.
        ValueError: the bridge has no prefix.
    """
    prefix = mount_prefix(bridge.prefix)
    try:
        from a2wsgi import WSGIMiddleware
    except ImportError:
        raise ImportError('mounting on Starlette or FastAPI needs a2wsgi: pip install "jet-sqla[asgi]"') from None
    falcon_app = http.create_app(cors_origins=bridge.cors_origins, **bridge._route_options(route_prefix=''))
    # Everything is ready: only now is the app changed.
    app.mount(prefix, WSGIMiddleware(falcon_app))  # type: ignore[arg-type]
