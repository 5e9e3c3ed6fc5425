"""A FastAPI app on SQLModel models, with jet_sqla mounted under /api in the same process.

Run it with::

    pip install "jet-sqla[asgi,sqlmodel]" fastapi uvicorn
    export JET_SQLA_TOKEN=s3cret
    uvicorn --factory jet_sqla.examples.fastapi_heroes.app:create_app

An empty database is stocked with two teams and a few heroes (``seed=False``
leaves it empty), so every action has something to run on.

jet_sqla's actions are plain ``def`` functions: they run in a worker thread on
a sync engine, so the event loop is never blocked by them.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route's annotations at
# run time, and they name the local ``session`` dependency.
import enum
import os
from collections.abc import Iterator
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel, select

from jet_sqla import ActionError, Bridge


class Power(str, enum.Enum):
    FLIGHT = 'flight'
    STRENGTH = 'strength'
    SPEED = 'speed'


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str  # SQLModel stores str as AutoString: jet_sqla labels rows by it and searches it


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    power: Power = Power.STRENGTH
    team_id: int | None = Field(default=None, foreign_key='team.id')
    retired: bool = False


def create_app(database_url: str | None = None, token: str | None = None, seed: bool = True) -> FastAPI:
    """The FastAPI app, with its own routes and jet_sqla under /api."""
    engine = sa.create_engine(database_url or os.environ.get('HEROES_DATABASE_URL', 'sqlite:///heroes.db'))
    SQLModel.metadata.create_all(engine, tables=[Team.__table__, Hero.__table__])  # type: ignore[attr-defined]
    if seed:
        stock(engine)
    app = FastAPI()

    def session() -> Iterator[Session]:
        with Session(engine) as db:
            yield db

    @app.get('/heroes')
    def heroes(db: Annotated[Session, Depends(session)]) -> list[dict[str, Any]]:
        return [{'id': hero.id, 'name': hero.name, 'power': hero.power} for hero in db.exec(select(Hero))]

    # Bridge(SQLModel): every table=True model; model= takes the SQLModel classes themselves.
    bridge = Bridge(SQLModel, engine=engine, token=token)

    @bridge.action(model=Hero, for_instance=True, bulk=True)
    def retire(heroes: list[Hero]) -> dict[str, int]:
        """Retire the selected heroes."""
        for hero in heroes:
            if hero.retired:
                raise ActionError(f'{hero.name} has already retired')
            hero.retired = True
        return {'retired': len(heroes)}

    @bridge.action()
    def recruit(name: str, power: Power, team: Team, session: OrmSession) -> dict[str, Any]:
        """Add a hero to a team."""
        hero = Hero(name=name, power=power, team_id=team.id)
        session.add(hero)
        session.flush()
        return {'id': hero.id}

    bridge.mount(app)  # /api/messages/ next to /heroes, in one process
    app.state.bridge = bridge
    return app


def stock(engine: sa.Engine) -> None:
    """Fill an empty database, so that a first run has heroes to retire and teams to pick."""
    with Session(engine) as db:
        if db.exec(select(Team.id).limit(1)).first() is not None:
            return
        avengers, defenders = Team(name='Avengers'), Team(name='Defenders')
        db.add_all([avengers, defenders])
        db.flush()
        db.add_all([
            Hero(name='Thor', power=Power.STRENGTH, team_id=avengers.id),
            Hero(name='Falcon', power=Power.FLIGHT, team_id=avengers.id),
            Hero(name='Luke Cage', power=Power.STRENGTH, team_id=defenders.id),
        ])
        db.commit()
