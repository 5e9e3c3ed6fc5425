"""Async users: Bridge(Base, engine=create_async_engine(...)), async URLs, and async def actions.

The app keeps using its AsyncEngine (aiosqlite, asyncpg); jet_sqla opens a
sync engine on the same database and runs the actions there. What one writes
the other reads.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import ActionError, Bridge
from jet_sqla.integrations import async_engines

from .conftest import TOKEN, Client, database_url


class Base(DeclarativeBase):
    pass


class Level(enum.Enum):
    LOW = 'low'
    HIGH = 'high'


class Project(Base):
    __tablename__ = 'async_projects'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))


class Task(Base):
    __tablename__ = 'async_tasks'
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    level: Mapped[Level] = mapped_column(sa.Enum(Level, name='async_level'), default=Level.LOW)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey('async_projects.id'))
    done: Mapped[bool] = mapped_column(default=False)


ASYNC_DRIVERS = {'sqlite': 'sqlite+aiosqlite', 'postgresql': 'postgresql+asyncpg'}


def async_url(dialect: str, tmp_path: Any) -> str:
    url = sa.make_url(database_url(dialect, tmp_path))
    return url.set(drivername=ASYNC_DRIVERS[dialect]).render_as_string(hide_password=False)


async def _prepare(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.drop_all)
        await connection.run_sync(Base.metadata.create_all)
        await connection.execute(sa.insert(Project), [{'id': 1, 'name': 'Apollo'}, {'id': 2, 'name': 'Gemini'}])
        await connection.execute(sa.insert(Task), [
            {'id': 1, 'title': 'Launch', 'project_id': 1, 'level': Level.HIGH, 'done': False},
            {'id': 2, 'title': 'Land', 'project_id': 1, 'level': Level.LOW, 'done': True},
        ])


async def _read(engine: AsyncEngine) -> dict[int, tuple[bool, Level, int]]:
    async with engine.connect() as connection:
        result = await connection.execute(sa.select(Task.id, Task.done, Task.level, Task.project_id))
        return {row[0]: (row[1], row[2], row[3]) for row in result}


@pytest.fixture(params=['sqlite', 'postgresql'])
def async_engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[AsyncEngine]:
    # NullPool: each asyncio.run below is its own event loop, and asyncpg connections belong to one loop.
    engine = create_async_engine(async_url(request.param, tmp_path), poolclass=sa.pool.NullPool)
    asyncio.run(_prepare(engine))
    yield engine
    asyncio.run(engine.dispose())


def read(engine: AsyncEngine) -> dict[int, tuple[bool, Level, int]]:
    return asyncio.run(_read(engine))


def build(engine: AsyncEngine | sa.Engine) -> tuple[Bridge, Client]:
    bridge = Bridge(Base, engine=engine, token=TOKEN)

    @bridge.action(model=Task, for_instance=True, bulk=True)
    def finish(tasks: list[Task]) -> dict[str, int]:
        for task in tasks:
            if task.done:
                raise ActionError(f'{task.title} is already done')
            task.done = True
        return {'finished': len(tasks)}

    @bridge.action()
    def move(task: Task, project: Project, level: Level, session: Session) -> None:
        task.project_id = project.id
        task.level = level
        session.flush()

    return bridge, Client(bridge)


def test_an_async_engine_gets_a_sync_engine_on_the_same_database(
    async_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger='jet_sqla'):
        bridge, client = build(async_engine)
    assert isinstance(bridge.engine, sa.Engine)
    assert bridge.engine.url.database == async_engine.url.database
    expected = {'aiosqlite': 'pysqlite', 'asyncpg': 'psycopg'}[async_engine.url.get_driver_name()]
    assert bridge.engine.url.get_driver_name() == expected
    assert any(expected in record.getMessage() and 'sync engine' in record.getMessage()
               for record in caplog.records)
    result = client.execute('finish', 'async_tasks', ids=[1])
    assert result.status_code == 200, result.text
    assert read(async_engine)[1][0] is True  # the app's async engine sees the action's commit


def test_a_refused_action_rolls_back(async_engine: AsyncEngine) -> None:
    _, client = build(async_engine)
    result = client.execute('finish', 'async_tasks', ids=[1, 2])
    assert result.status_code == 400, result.text
    assert read(async_engine)[1][0] is False


def test_enum_and_foreign_key_options_and_params(async_engine: AsyncEngine) -> None:
    _, client = build(async_engine)
    levels = client.message('get_field_options', {'model': 'async_tasks', 'field': 'level'}).json
    assert [option['value'] for option in levels] == ['LOW', 'HIGH']
    projects = client.message('get_field_options', {'model': 'async_tasks', 'field': 'project_id'}).json
    assert [(option['value'], option['name']) for option in projects] == [(1, 'Apollo'), (2, 'Gemini')]
    moved = client.execute('move', task=1, project=2, level='high')
    assert moved.status_code == 200, moved.text
    assert read(async_engine)[1] == (False, Level.HIGH, 2)


def test_the_sync_engine_of_an_async_engine_is_replaced_too(async_engine: AsyncEngine) -> None:
    # Passing .sync_engine used to build, then fail every action with MissingGreenlet.
    bridge, client = build(async_engine.sync_engine)
    assert not getattr(bridge.engine.dialect, 'is_async', False)
    assert client.execute('finish', 'async_tasks', ids=[1]).status_code == 200


def test_reflect_accepts_an_async_url_and_an_async_engine(async_engine: AsyncEngine) -> None:
    url = async_engine.url.render_as_string(hide_password=False)
    for source in (url, async_engine):
        bridge = Bridge.reflect(source, token=TOKEN)
        assert {'async_projects', 'async_tasks'} <= {collection.name for collection in bridge.catalog}
        assert not getattr(bridge.engine.dialect, 'is_async', False)
        bridge.engine.dispose()


def test_sync_urls_for_every_async_driver() -> None:
    assert str(async_engines.sync_url('postgresql+asyncpg://u@h/db')) == 'postgresql+psycopg://u@h/db'
    assert str(async_engines.sync_url('sqlite+aiosqlite:///x.db')) == 'sqlite+pysqlite:///x.db'
    assert str(async_engines.sync_url('mysql+aiomysql://u@h/db')) == 'mysql+pymysql://u@h/db'
    assert str(async_engines.sync_url('mysql+asyncmy://u@h/db')) == 'mysql+pymysql://u@h/db'
    assert str(async_engines.sync_url('postgresql+psycopg://u@h/db')) == 'postgresql+psycopg://u@h/db'


def test_a_missing_sync_driver_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if PyMySQL were not installed: the module the sync driver needs cannot be found.
    monkeypatch.setitem(async_engines.SYNC_DRIVERS, 'aiomysql', ('pymysql', 'no_such_module_here', 'mysql'))
    with pytest.raises(async_engines.MissingDriver) as raised:
        async_engines.sync_url('mysql+aiomysql://root@127.0.0.1/test')
    message = str(raised.value)
    assert '\n' not in message
    assert 'pip install "jet-sqla[mysql]"' in message


def test_an_in_memory_async_sqlite_is_refused_with_the_reason() -> None:
    engine = create_async_engine('sqlite+aiosqlite://')
    with pytest.raises(ValueError, match='in-memory SQLite'):
        Bridge(Base, engine=engine, token=TOKEN)


def test_an_async_def_action_is_refused_at_declaration() -> None:
    bridge = Bridge(Base, engine=sa.create_engine('sqlite://'), token=TOKEN)
    with pytest.raises(TypeError, match='Write a plain def, and use the session jet_sqla gives it'):
        @bridge.action(model=Task, for_instance=True)
        async def finish_later(task: Task) -> None: ...
    assert len(bridge.actions) == 0


def test_an_async_sessionmaker_is_refused_pointing_to_engine(tmp_path: Any) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker
    engine = create_async_engine(f'sqlite+aiosqlite:///{tmp_path / "x.db"}')
    with pytest.raises(TypeError, match='must return a sqlalchemy.orm.Session, not AsyncSession'):
        Bridge(Base, session_factory=async_sessionmaker(engine), token=TOKEN)  # type: ignore[arg-type]
