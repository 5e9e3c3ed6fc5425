"""A Flask-SQLAlchemy app whose bridge (built from ``db.Model``) has a background action, for ``jet-sqla worker``.

The bridge lives here and the app factory in :mod:`tests.apps.flask_jobs_factory`, as in an app
that keeps its extensions in a module of their own. Database, broker, queue and token come from
the environment, as in a deployment.
"""

from __future__ import annotations

import os

import flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import ActionError, Bridge


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Parcel(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = 'flask_job_parcels'
    id: Mapped[int] = mapped_column(primary_key=True)
    scanned: Mapped[int] = mapped_column(default=0)


bridge = Bridge(db.Model, token=os.environ.get('JET_SQLA_TOKEN'))


@bridge.action(model=Parcel, for_instance=True, bulk=True, background=True, chunk_size=3)
def scan(parcels: list[Parcel], session: Session) -> None:
    """Runs only inside the app's context, on its db.session: anywhere else it fails the chunk."""
    if not flask.has_app_context() or flask.current_app.name != 'parcels' or session is not db.session():
        raise ActionError('not inside the Flask app')
    for parcel in parcels:
        parcel.scanned += 1
