"""SQLModel users' actions get SQLModel sessions: ``session.exec()``, the idiom of every SQLModel app, works."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlmodel
from falcon import testing
from jet_sqla.examples.fastapi_heroes.app import Hero, Power, Team

from jet_sqla import Bridge

from .conftest import AUTH, TOKEN
from .models import Base


def run(bridge: Bridge, name: str, params: dict[str, Any]) -> testing.Result:
    client = testing.TestClient(bridge.wsgi_app())
    return client.simulate_post('/api/messages/', json={'name': 'execute_action', 'params': {'name': name, **params}},
                                headers=AUTH)


def test_an_action_annotating_sqlmodels_session_can_exec(tmp_path: Path) -> None:
    engine = sa.create_engine(f'sqlite:///{tmp_path / "heroes.db"}')
    sqlmodel.SQLModel.metadata.create_all(engine, tables=[Team.__table__, Hero.__table__])  # type: ignore[attr-defined]
    bridge = Bridge(sqlmodel.SQLModel, engine=engine, token=TOKEN)

    @bridge.action()
    def found_team(name: str, session: sqlmodel.Session) -> dict[str, Any]:
        # Failed with a 500 before: "'Session' object has no attribute 'exec'".
        team = Team(name=name)
        session.add(team)
        session.flush()
        session.add(Hero(name='Thor', power=Power.STRENGTH, team_id=team.id))
        heroes = session.exec(sqlmodel.select(Hero).where(Hero.team_id == team.id)).all()
        return {'heroes': [hero.name for hero in heroes], 'sqlmodel': isinstance(session, sqlmodel.Session)}

    @bridge.action(model=Hero, for_instance=True, bulk=True)
    def rename(heroes: list[Hero], prefix: str) -> None:
        for hero in heroes:
            hero.name = prefix + hero.name

    with warnings.catch_warnings():
        # jet_sqla loads records itself: SQLModel's "you probably want exec()" must not fire for that.
        warnings.simplefilter('error', DeprecationWarning)
        made = run(bridge, 'found_team', {'params': {'name': 'Avengers'}})
        assert made.status_code == 200, made.text
        assert made.json == {'result': True, 'heroes': ['Thor'], 'sqlmodel': True}
        renamed = run(bridge, 'rename', {'model': 'hero', 'ids': [1], 'params': {'prefix': 'Sir '}})
        assert renamed.status_code == 200, renamed.text
    with sqlmodel.Session(engine) as session:
        assert session.exec(sqlmodel.select(Hero.name)).all() == ['Sir Thor']
    engine.dispose()


def test_plain_declarative_models_keep_plain_sessions(tmp_path: Path) -> None:
    engine = sa.create_engine(f'sqlite:///{tmp_path / "plain.db"}')
    Base.metadata.create_all(engine)
    bridge = Bridge(Base, engine=engine, token=TOKEN)

    @bridge.action()
    def kind(session: sa.orm.Session) -> dict[str, bool]:
        return {'sqlmodel': isinstance(session, sqlmodel.Session)}

    result = run(bridge, 'kind', {})
    assert result.status_code == 200 and result.json == {'result': True, 'sqlmodel': False}
    engine.dispose()
