"""User code with every kind of target, session factory, async engine and app passes ``mypy --strict``."""

from __future__ import annotations

from pathlib import Path

from .test_typing import run_mypy

USER_CODE = '''
from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlmodel import SQLModel

from jet_sqla import Bridge


class Base(DeclarativeBase):
    pass


class Other(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = 'things'
    id: Mapped[int] = mapped_column(primary_key=True)


db = SQLAlchemy()
engine = sa.create_engine('sqlite://')
SessionLocal = sessionmaker(engine)


def open_session() -> Session:
    return SessionLocal()


with_sqlmodel = Bridge(SQLModel, engine=engine, token='t')
with_factory = Bridge(Base, session_factory=SessionLocal, token='t')
with_callable = Bridge(Base, session_factory=open_session, token='t')
with_async = Bridge(Base, engine=create_async_engine('sqlite+aiosqlite:///x.db'), token='t')
with_list = Bridge([Base, Other.registry, sa.MetaData()], engine=engine, token='t')
with_flask = Bridge(db.Model, token='t')
reflected = Bridge.reflect(create_async_engine('sqlite+aiosqlite:///x.db'), schemas=[None, 'billing'], token='t')

flask_app: Flask = with_flask.init_app(Flask(__name__))
fastapi_app: FastAPI = with_sqlmodel.mount(FastAPI())


@with_factory.action(model=Thing, for_instance=True)
def touch(thing: Thing, session: Session) -> None:
    session.add(thing)
'''

WRONG_CODE = '''
from jet_sqla import Bridge
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


Bridge(Base, session_factory=42, token='t')
'''


def test_user_code_with_every_integration_type_checks(tmp_path: Path) -> None:
    user = tmp_path / 'user_app.py'
    user.write_text(USER_CODE)
    result = run_mypy('--strict', '--no-incremental', str(user))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_session_factory_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a session factory that is no callable is an error."""
    wrong = tmp_path / 'wrong_app.py'
    wrong.write_text(WRONG_CODE)
    result = run_mypy('--strict', '--no-incremental', str(wrong))
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'session_factory' in result.stdout
