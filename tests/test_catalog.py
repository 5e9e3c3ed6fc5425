"""Models, registries and MetaData become named collections; reflect mode; labels."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, registry

from jet_sqla import Bridge
from jet_sqla.catalog import Catalog, default_collection_name
from jet_sqla.errors import NotFound

from . import models
from .conftest import TOKEN, Client

EXPECTED = {'users', 'accounts', 'tags', 'documents', 'counters'}


def test_declarative_base_registry_and_metadata_give_the_same_collections(engine: sa.Engine) -> None:
    by_base = Catalog(models.Base)
    by_registry = Catalog(models.Base.registry)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    by_metadata = Catalog(metadata)
    for catalog in (by_base, by_registry, by_metadata):
        assert {collection.name for collection in catalog} == EXPECTED
    assert by_base.get(models.User).model is models.User
    automapped = by_metadata.get('users').model
    assert automapped is not models.User and automapped.__table__.name == 'users'


def test_bridge_over_bare_metadata_serves_actions_on_automapped_classes(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(models.User.__table__), [{'id': 1, 'name': 'ada', 'tier': 'GOLD'}])
    bridge = Bridge(models.Base.metadata, engine=engine, token=TOKEN)
    seen: list[str] = []

    @bridge.action(model='users', for_instance=True)
    def greet(user: Any) -> None:
        seen.append(user.name)

    result = Client(bridge).execute('greet', id=1)
    assert result.status_code == 200, result.text
    assert seen == ['ada']


def test_collection_name_of_a_model(bridge: Bridge) -> None:
    assert bridge.collection_name(models.User) == 'users'
    assert bridge.collection_name('tags') == 'tags'
    with pytest.raises(NotFound):
        bridge.collection_name('nope')


def test_collection_name_override(engine: sa.Engine) -> None:
    bridge = Bridge(models.Base, engine=engine, token=TOKEN,
                    collection_name=lambda mapper: 'app;' + mapper.class_.__name__.lower())
    assert bridge.collection_name(models.User) == 'app;user'

    @bridge.action(model=models.User)
    def noop() -> None: ...

    listed = Client(bridge).message('get_action_list').json
    assert listed[0]['model_action']['model'] == 'app;user'


def test_colliding_names_are_an_error_at_construction(engine: sa.Engine) -> None:
    with pytest.raises(ValueError, match="two models are named collection 'same'"):
        Catalog(models.Base, collection_name=lambda mapper: 'same')


def test_table_outside_default_schema_is_schema_dot_table() -> None:
    local = registry()

    @local.mapped
    class Sale:
        __tablename__ = 'sales'
        __table_args__ = {'schema': 'archive'}
        id: Mapped[int] = mapped_column(primary_key=True)

    @local.mapped
    class Plain:
        __tablename__ = 'plain'
        id: Mapped[int] = mapped_column(primary_key=True)

    catalog = Catalog(local)
    assert {collection.name for collection in catalog} == {'archive.sales', 'plain'}
    assert Catalog(local, default_schema='archive').get(Sale).name == 'sales'


def test_default_collection_name_is_a_plain_function() -> None:
    assert default_collection_name(sa.inspect(models.User)) == 'users'


class TestLabels:
    def test_label_columns_are_chosen_by_name_then_first_string_then_pk(self) -> None:
        catalog = Catalog(models.Base)
        assert catalog.get('users').label.name == 'name'
        assert catalog.get('tags').label.name == 'title'
        assert catalog.get('documents').label.name == 'headline'
        assert catalog.get('counters').label.name == 'id'
        assert catalog.get('accounts').label.name == 'id'  # owner_id is a key, not a label

    def test_label_override_per_model_or_name(self) -> None:
        catalog = Catalog(models.Base, labels={models.User: 'email', 'tags': 'code'})
        assert catalog.get('users').label.name == 'email'
        assert catalog.get('tags').label.name == 'code'

    def test_unknown_label_column_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="label column 'nope'"):
            Catalog(models.Base, labels={models.User: 'nope'})


def test_table_without_primary_key_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    metadata = sa.MetaData()
    sa.Table('events', metadata, sa.Column('at', sa.String(10)))
    sa.Table('things', metadata, sa.Column('id', sa.Integer, primary_key=True))
    with caplog.at_level(logging.WARNING):
        catalog = Catalog(metadata)
    assert [collection.name for collection in catalog] == ['things']
    assert "'events' has no primary key" in caplog.text


def test_bridge_needs_an_engine() -> None:
    with pytest.raises(TypeError, match='engine='):
        Bridge(models.Base, token=TOKEN)


def test_bridge_refuses_a_target_of_another_kind(engine: sa.Engine) -> None:
    with pytest.raises(TypeError, match='DeclarativeBase subclass, a class carrying a registry'):
        Bridge(object(), engine=engine, token=TOKEN)  # type: ignore[arg-type]


class TestReflect:
    def test_reflect_serves_every_table_with_derived_options(self, db_url: str, engine: sa.Engine) -> None:
        with engine.begin() as connection:
            connection.execute(sa.insert(models.User.__table__), [
                {'id': 1, 'name': 'Ada', 'tier': 'GOLD', 'status': 'done', 'mood': 'happy'},
                {'id': 2, 'name': 'Alan', 'tier': 'BRONZE', 'status': 'done', 'mood': None},
            ])
        bridge = Bridge.reflect(db_url, token=TOKEN)
        try:
            assert {collection.name for collection in bridge.catalog} == EXPECTED
            client = Client(bridge)
            owners = client.message('get_field_options', {'model': 'accounts', 'field': 'owner_id'})
            assert owners.status_code == 200
            assert [(o['value'], o['name']) for o in owners.json] == [(1, 'Ada'), (2, 'Alan')]
            moods = client.message('get_field_options', {'model': 'users', 'field': 'mood'})
            if engine.dialect.name == 'sqlite':
                # SQLite stores an Enum as VARCHAR: reflection cannot see the choices.
                assert moods.status_code == 404
            else:
                assert [o['value'] for o in moods.json] == ['happy', 'grumpy']
                statuses = client.message('get_field_options', {'model': 'users', 'field': 'status'})
                assert [o['value'] for o in statuses.json] == ['in-progress', 'done']
        finally:
            bridge.engine.dispose()

    @pytest.mark.parametrize('dialect', ['postgresql'])  # schemas inside one database
    def test_reflect_names_tables_of_another_schema(self, engine: sa.Engine, db_url: str) -> None:
        with engine.begin() as connection:
            connection.execute(sa.text('CREATE SCHEMA sales'))
            connection.execute(sa.text('CREATE TABLE sales.orders (id integer primary key, total numeric)'))
        bridge = Bridge.reflect(db_url, schemas=[None, 'sales'], token=TOKEN)
        try:
            names = {collection.name for collection in bridge.catalog}
            assert 'sales.orders' in names and 'users' in names
        finally:
            bridge.engine.dispose()


def test_classes_mapped_after_the_bridge_is_built_are_served(engine: sa.Engine) -> None:
    """An app's extensions module builds the bridge before its models module maps the classes."""
    from sqlalchemy.orm import DeclarativeBase

    from .conftest import TOKEN, Client

    class LateBase(DeclarativeBase):
        pass

    bridge = Bridge(LateBase, engine=engine, token=TOKEN)
    assert len(bridge.catalog) == 0

    class Late(LateBase):
        __tablename__ = 'late_rows'
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(20))

    LateBase.metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            connection.execute(sa.insert(Late.__table__), [{'id': 1, 'name': 'one'}])

        @bridge.action(model=Late, for_instance=True)
        def shout(row: Any) -> dict[str, str]:  # a local class cannot be named in an annotation
            return {'name': row.name.upper()}

        assert bridge.collection_name(Late) == 'late_rows'
        assert Client(bridge).execute('shout', 'late_rows', ids=[1]).json == {'result': True, 'name': 'ONE'}
    finally:
        LateBase.metadata.drop_all(engine)
