"""A module whose ``app`` is a Flask app instance (not a factory), with a bridge joined to it."""

from __future__ import annotations

import flask
import sqlalchemy as sa

from jet_sqla import Bridge

from .. import models

engine = sa.create_engine('sqlite://')
bridge = Bridge(models.Base, engine=engine, token='flask-target-token')
app = flask.Flask(__name__)
bridge.init_app(app)
