"""Faults: actions that write in two steps, for the outage, lost-client and worker-crash tests.

Every action writes two ``legs`` rows for its ``ref`` and bumps the one
``gauges`` row, so a half-applied run is visible: a ref with one leg, or a gauge
that differs from the number of complete pairs. gunicorn builds the app with
``tests.apps.faults:create_app()`` from ``JET_SQLA_DATABASE_URL``,
``JET_SQLA_TOKEN`` and ``JET_SQLA_FAULTS_DIR`` (where actions leave marker files
the test waits for).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import Bridge

#: The longest a blocking action waits for the test to kill its worker.
BLOCK_SECONDS = 20.0


class Base(DeclarativeBase):
    pass


class Gauge(Base):
    """One row counting the committed pairs; every action locks it, so runs also hold a row lock."""

    __tablename__ = 'gauges'

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    pairs: Mapped[int] = mapped_column(default=0)


class Leg(Base):
    __tablename__ = 'legs'

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(sa.String(64), index=True)
    leg: Mapped[int]
    # A foreign key, so that get_field_options on it reads the database too.
    gauge_id: Mapped[int] = mapped_column(sa.ForeignKey('gauges.id'), default=1)


def create_tables(engine: sa.Engine) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(Gauge(id=1, pairs=0))


def pairs_by_ref(engine: sa.Engine) -> dict[str, int]:
    """How many legs each ref has: 2 for a complete run, never 1."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(Leg.ref, sa.func.count()).group_by(Leg.ref))
        return {ref: count for ref, count in rows}


def gauge(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(Gauge.pairs).where(Gauge.id == 1)).scalar_one())


def _first_leg(session: Session, ref: str) -> None:
    session.execute(sa.update(Gauge).where(Gauge.id == 1).values(pairs=Gauge.pairs + 1))
    session.add(Leg(ref=ref, leg=1))
    session.flush()  # sent to the database now, so a fault after this point has something to undo


def _mark(ref: str, suffix: str, text: str = '') -> None:
    directory = Path(os.environ['JET_SQLA_FAULTS_DIR'])
    partial = directory / f'{ref}.{suffix}.partial'
    partial.write_text(text)
    partial.rename(directory / f'{ref}.{suffix}')  # atomic: the test never reads half a file


def pair(ref: str, session: Session) -> None:
    """Write both legs at once."""
    _first_leg(session, ref)
    session.add(Leg(ref=ref, leg=2))


def pair_slow(ref: str, pause: float, session: Session) -> None:
    """Write a leg, say so, wait ``pause`` seconds, write the other."""
    _first_leg(session, ref)
    _mark(ref, 'started')
    time.sleep(min(pause, BLOCK_SECONDS))
    session.add(Leg(ref=ref, leg=2))


def pair_then_block(ref: str, session: Session) -> None:
    """Write a leg, leave this worker's pid for the test, then wait to be killed."""
    _first_leg(session, ref)
    _mark(ref, 'pid', str(os.getpid()))
    time.sleep(BLOCK_SECONDS)
    session.add(Leg(ref=ref, leg=2))


def make_engine(url: str) -> sa.Engine:
    """Pre-ping and a short connect timeout: an outage answers fast, and the pool heals after it."""
    connect_args: dict[str, Any] = {} if url.startswith('sqlite') else {'connect_timeout': 2}
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2, connect_args=connect_args)


def create_app() -> Any:
    """The app of one gunicorn worker."""
    bridge = Bridge(Base, engine=make_engine(os.environ['JET_SQLA_DATABASE_URL']))
    for action in (pair, pair_slow, pair_then_block):
        bridge.action()(action)
    return bridge.wsgi_app()
