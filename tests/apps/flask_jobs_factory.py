"""The app factory of :mod:`tests.apps.flask_jobs`: ``jet-sqla worker tests.apps.flask_jobs_factory:create_app``."""

from __future__ import annotations

import os

import flask

from . import flask_jobs  # the module, not its names: the worker must find the bridge through the app


def create_app() -> flask.Flask:
    app = flask.Flask('parcels')
    app.config['SQLALCHEMY_DATABASE_URI'] = os.environ['JET_SQLA_DATABASE_URL']
    flask_jobs.db.init_app(app)
    flask_jobs.bridge.init_app(app)
    return app
