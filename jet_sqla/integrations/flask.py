"""Flask and Flask-SQLAlchemy: ``bridge.init_app(app)`` (or ``bridge.mount(app)``).

jet_sqla's Falcon app is dispatched to under the bridge's prefix, beside the
Flask app's own routes, and every request to it runs inside the Flask app
context. When the bridge was built from Flask-SQLAlchemy's ``db.Model``, the
engine comes from ``db`` (binds and ``__bind_key__`` included), and each
action's session *is* ``db.session``: whatever the action writes through it
commits or rolls back with the action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import flask
from sqlalchemy.orm import Session
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .. import database, http
from .mounting import mount_prefix

__all__ = ['flask_session_factory', 'mount_on_flask']


def flask_session_factory(db: Any) -> Callable[[], Session]:
    """Sessions that are ``db.session``: the scoped session of the current app context."""

    def current_session() -> Session:
        session: Session = db.session()
        return session

    return current_session


def mount_on_flask(bridge: Any, app: flask.Flask) -> None:
    """Serve ``bridge`` under its prefix in ``app``.

    Raises:
        RuntimeError: ``db.init_app(app)`` has not been called yet, or the bridge is not ready.
        ValueError: the bridge has no prefix.
    """
    prefix = mount_prefix(bridge.prefix)
    db = bridge.flask_db
    if db is not None and bridge.user_session_factory is None:
        if 'sqlalchemy' not in app.extensions:
            raise RuntimeError('Flask-SQLAlchemy is not set up on this app yet: call db.init_app(app) '
                               'before bridge.init_app(app)')
        with app.app_context():
            bridge.use_database(db.engine, flask_session_factory(db))
            for engine in db.engines.values():  # every bind: statement timeouts are reset on each
                database.install(engine)
            # db.session is the app's: only its own sessions (and binds) see the right engine.
            bridge.dispatcher.options_in_sessions = True
    falcon_app = http.create_app(cors_origins=bridge.cors_origins, **bridge._route_options(route_prefix=''))
    bridge.app_context = app.app_context

    def in_app_context(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # The action, its options and db.session all see current_app, as in a Flask view.
        with app.app_context():
            body: Iterable[bytes] = falcon_app(environ, start_response)
            return body

    # Everything is ready: only now is the app changed.
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {prefix: in_app_context})  # type: ignore[method-assign]
