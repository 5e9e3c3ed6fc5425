"""Mapping correctness: the shapes real models take, each with the behaviour it must get.

Inheritance, attribute names unlike column names, composite foreign keys,
``after=`` on a non-key column, enum mixins, custom string types, tables that
cannot be served, CHAR padding, unsigned 64-bit keys and several schemas.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import Bridge
from jet_sqla.collection import UINT64_MAX
from jet_sqla.fields import Field

from .conftest import (
    MARIADB_URL,
    POSTGRES_URL,
    TOKEN,
    Client,
    database_url,
    private_database,
)


class Base(DeclarativeBase):
    pass


# --- single-table inheritance -------------------------------------------------

class Vehicle(Base):
    __tablename__ = 'map_vehicles'
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(50))
    __mapper_args__ = {'polymorphic_on': 'kind', 'polymorphic_identity': 'vehicle'}


class Car(Vehicle):
    __mapper_args__ = {'polymorphic_identity': 'car'}


class Truck(Vehicle):
    __mapper_args__ = {'polymorphic_identity': 'truck'}


# --- attribute names unlike column names ---------------------------------------

class Mood(enum.Enum):
    CALM = 'calm'
    BUSY = 'busy'


class Profile(Base):
    __tablename__ = 'map_profiles'
    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column('handle_col', sa.String(50))
    state: Mapped[Mood] = mapped_column('status_col', sa.Enum(Mood, name='map_mood'))


class Post(Base):
    __tablename__ = 'map_posts'
    id: Mapped[int] = mapped_column(primary_key=True)
    author: Mapped[int] = mapped_column('author_id', sa.ForeignKey('map_profiles.id'))


# --- composite and non-key foreign keys -------------------------------------------

class Shelf(Base):
    __tablename__ = 'map_shelves'
    room: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(50))


class Box(Base):
    __tablename__ = 'map_boxes'
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_room: Mapped[int]
    shelf_position: Mapped[int]
    __table_args__ = (sa.ForeignKeyConstraint(['shelf_room', 'shelf_position'],
                                              ['map_shelves.room', 'map_shelves.position']),)


class Currency(Base):
    __tablename__ = 'map_currencies'
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(3), unique=True)
    name: Mapped[str] = mapped_column(sa.String(50))


class Price(Base):
    __tablename__ = 'map_prices'
    id: Mapped[int] = mapped_column(primary_key=True)
    currency_code: Mapped[str] = mapped_column(sa.ForeignKey('map_currencies.code'))


# --- custom string types, CHAR ---------------------------------------------------

class Trimmed(sa.types.TypeDecorator[str]):
    """A custom string type, as apps write them."""

    impl = sa.String(50)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return value.strip() if value is not None else None


class Label(Base):
    __tablename__ = 'map_labels'
    id: Mapped[int] = mapped_column(primary_key=True)
    caption: Mapped[str] = mapped_column(Trimmed())


class Sticker(Base):
    __tablename__ = 'map_stickers'
    id: Mapped[int] = mapped_column(primary_key=True)
    label_id: Mapped[int] = mapped_column(sa.ForeignKey('map_labels.id'))


class Country(Base):
    __tablename__ = 'map_countries'
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.CHAR(12))


class City(Base):
    __tablename__ = 'map_cities'
    id: Mapped[int] = mapped_column(primary_key=True)
    country_id: Mapped[int] = mapped_column(sa.ForeignKey('map_countries.id'))


# --- tables that are not collections ---------------------------------------------

profile_tags = sa.Table(
    'map_profile_tags', Base.metadata,
    sa.Column('profile_id', sa.ForeignKey('map_profiles.id'), primary_key=True),
    sa.Column('label_id', sa.ForeignKey('map_labels.id'), primary_key=True),
)
raw_events = sa.Table('map_raw_events', Base.metadata, sa.Column('payload', sa.String(50)))


@pytest.fixture(params=['sqlite', 'postgresql'])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url(request.param, tmp_path))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add_all([Car(id=1, name='Beetle'), Truck(id=2, name='Actros'), Car(id=3, name='Mini')])
        session.add_all([Profile(id=1, handle='ada', state=Mood.CALM), Profile(id=2, handle='bob', state=Mood.BUSY)])
        session.add_all([Shelf(room=1, position=1, title='A'), Shelf(room=1, position=2, title='B'),
                         Shelf(room=2, position=1, title='C')])
        session.add_all([Currency(id=1, code='USD', name='Dollar'), Currency(id=2, code='EUR', name='Euro'),
                         Currency(id=3, code='GBP', name='Pound')])
        session.add_all([Label(id=1, caption='fragile'), Label(id=2, caption='heavy')])
        session.add_all([Country(id=1, code='IT'), Country(id=2, code='FR')])
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def bridge(engine: sa.Engine) -> Bridge:
    return Bridge(Base, engine=engine, token=TOKEN, labels={Profile: 'handle'}, console=True)


def options(client: Client, **params: Any) -> Any:
    response = client.message('get_field_options', params)
    assert response.status_code == 200, response.text
    return response.json


class TestSingleTableInheritance:
    def test_an_action_on_a_subclass_loads_only_its_rows(self, bridge: Bridge, engine: sa.Engine) -> None:
        @bridge.action(model=Car, for_instance=True, bulk=True)
        def rename_cars(cars: list[Car]) -> dict[str, list[str]]:
            return {'classes': [type(car).__name__ for car in cars]}

        client = Client(bridge)
        ok = client.execute('rename_cars', 'map_vehicles', ids=[1, 3])
        assert ok.status_code == 200, ok.text
        assert ok.json['classes'] == ['Car', 'Car']
        truck = client.execute('rename_cars', 'map_vehicles', ids=[1, 2])
        assert truck.status_code == 404, truck.text
        assert truck.json['missing_ids'] == [2]

    def test_a_subclass_param_refuses_a_siblings_id(self, bridge: Bridge) -> None:
        @bridge.action()
        def service(car: Car) -> dict[str, str]:
            return {'name': car.name}

        client = Client(bridge)
        assert client.execute('service', car=1).json == {'result': True, 'name': 'Beetle'}
        refused = client.execute('service', car=2)
        assert refused.status_code == 400 and 'car' in refused.json.get('fields', refused.json).__str__()


class TestAttributeNames:
    def test_options_by_attribute_or_column_name_and_labels_by_attribute(self, bridge: Bridge) -> None:
        client = Client(bridge)
        by_attribute = options(client, model='map_profiles', field='state')
        by_column = options(client, model='map_profiles', field='status_col')
        assert [o['value'] for o in by_attribute] == [o['value'] for o in by_column] == ['CALM', 'BUSY']
        authors = options(client, model='map_posts', field='author')  # labelled by Profile.handle
        assert [(o['value'], o['name']) for o in authors] == [(1, 'ada'), (2, 'bob')]
        assert options(client, model='map_posts', field='author_id') == authors

    def test_the_attribute_name_is_the_one_listed(self, bridge: Bridge) -> None:
        listed = Client(bridge).message('list_records', {'model': 'map_profiles'}).json
        assert [column['name'] for column in listed['columns']] == ['id', 'handle', 'state']
        assert listed['records'][0] == {'id': 1, 'handle': 'ada', 'state': 'calm'}

    def test_a_label_naming_no_column_is_refused(self, engine: sa.Engine) -> None:
        with pytest.raises(ValueError, match='nickname'):
            Bridge(Base, engine=engine, token=TOKEN, labels={Profile: 'nickname'})


class TestForeignKeys:
    def test_a_composite_foreign_key_gets_no_per_column_options(self, bridge: Bridge) -> None:
        client = Client(bridge)
        for field in ('shelf_room', 'shelf_position'):
            response = client.message('get_field_options', {'model': 'map_boxes', 'field': field})
            assert response.status_code == 404, response.text
            assert field in response.json['detail']
            assert 'composite foreign key (shelf_room, shelf_position)' in response.json['detail']

    def test_after_is_parsed_with_the_referenced_columns_type(self, bridge: Bridge) -> None:
        client = Client(bridge)
        page = options(client, model='map_prices', field='currency_code')
        assert [o['value'] for o in page] == ['EUR', 'GBP', 'USD']
        after = options(client, model='map_prices', field='currency_code', after='EUR')
        assert [o['value'] for o in after] == ['GBP', 'USD']


class Colour(str, enum.Enum):
    RED = 'red'
    BLUE = 'blue'


class Size(enum.StrEnum):
    SMALL = 'small'
    LARGE = 'large'


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class TestEnumMixins:
    def test_str_mixin_strenum_and_intenum_params_are_selects(self, bridge: Bridge) -> None:
        @bridge.action()
        def paint(colour: Colour, size: Size, priority: Priority) -> dict[str, Any]:
            return {'types': [type(colour).__name__, type(size).__name__, type(priority).__name__],
                    'priority': int(priority)}

        client = Client(bridge)
        described = {p['name']: p for p in client.message('get_action_list').json[0]['params']}
        assert {name: p['field'] for name, p in described.items()} == {
            'colour': 'SelectField', 'size': 'SelectField', 'priority': 'SelectField'}
        assert [o['value'] for o in described['colour']['params']['options']] == ['red', 'blue']
        assert [o['value'] for o in described['size']['params']['options']] == ['small', 'large']
        assert [o['value'] for o in described['priority']['params']['options']] == [1, 2]
        ran = client.execute('paint', colour='blue', size='large', priority=2)
        assert ran.json == {'result': True, 'types': ['Colour', 'Size', 'Priority'], 'priority': 2}
        assert client.execute('paint', colour='green', size='large', priority=2).status_code == 400


class TestCustomStringTypes:
    def test_a_type_decorator_over_string_is_text_for_labels_and_q(self, bridge: Bridge) -> None:
        assert bridge.catalog.get(Label).label.name == 'caption'
        client = Client(bridge)
        found = options(client, model='map_stickers', field='label_id', q='HEAV')
        assert [(o['value'], o['name']) for o in found] == [(2, 'heavy')]

    def test_its_field_is_the_field_of_what_it_stores(self) -> None:
        from jet_sqla.fields import field_for_column_type
        assert field_for_column_type(Trimmed()) is Field.CHAR


class TestUnservedTables:
    def test_no_primary_key_warns_and_an_association_table_is_named_as_one(
        self, engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger='jet_sqla'):
            Bridge(Base, engine=engine, token=TOKEN)
        messages = [record.getMessage() for record in caplog.records]
        assert any('map_raw_events' in m and 'has no primary key' in m for m in messages), messages
        assert any('map_profile_tags' in m and 'association table' in m for m in messages), messages
        assert not any('map_profile_tags' in m and 'no primary key' in m for m in messages), messages

    def test_the_same_when_reflected(self, engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING, logger='jet_sqla'):
            bridge = Bridge.reflect(engine, token=TOKEN)
        messages = [record.getMessage() for record in caplog.records]
        assert any('map_raw_events' in m and 'has no primary key' in m for m in messages), messages
        assert any('map_profile_tags' in m and 'association table' in m for m in messages), messages
        assert 'map_profile_tags' not in {collection.name for collection in bridge.catalog}


def test_char_labels_are_trimmed(bridge: Bridge) -> None:
    # PostgreSQL pads CHAR(12) values with spaces; the label is read without them.
    found = options(Client(bridge), model='map_cities', field='country_id')
    assert [(o['value'], o['name']) for o in found] == [(1, 'IT'), (2, 'FR')]


# --- MariaDB: unsigned 64-bit keys ------------------------------------------------

class UnsignedBase(DeclarativeBase):
    pass


class Counter(UnsignedBase):
    __tablename__ = 'map_counters'
    id: Mapped[int] = mapped_column(mysql.BIGINT(unsigned=True), primary_key=True, autoincrement=False)
    hits: Mapped[int] = mapped_column(default=0)


def test_unsigned_64_bit_ids_on_mariadb() -> None:
    engine = sa.create_engine(private_database(MARIADB_URL))
    UnsignedBase.metadata.drop_all(engine)
    UnsignedBase.metadata.create_all(engine)
    try:
        with Session(engine) as session, session.begin():
            session.add(Counter(id=UINT64_MAX))
        bridge = Bridge(UnsignedBase, engine=engine, token=TOKEN)

        @bridge.action(model=Counter, for_instance=True)
        def hit(counter: Counter) -> dict[str, str]:
            counter.hits += 1
            return {'id': str(counter.id)}

        client = Client(bridge)
        ran = client.execute('hit', 'map_counters', ids=[str(UINT64_MAX)])
        assert ran.status_code == 200, ran.text
        assert ran.json['id'] == str(UINT64_MAX)
        assert client.execute('hit', 'map_counters', ids=[UINT64_MAX]).status_code == 200
        assert client.execute('hit', 'map_counters', ids=[str(UINT64_MAX + 1)]).status_code == 400
        assert client.execute('hit', 'map_counters', ids=['-1']).status_code == 400
        with engine.connect() as connection:
            assert connection.execute(sa.select(Counter.hits)).scalar_one() == 2
    finally:
        UnsignedBase.metadata.drop_all(engine)
        engine.dispose()


# --- PostgreSQL: several schemas --------------------------------------------------

def test_reflecting_several_schemas_keeps_same_named_tables_apart(caplog: pytest.LogCaptureFixture) -> None:
    engine = sa.create_engine(private_database(POSTGRES_URL))
    with engine.begin() as connection:
        connection.execute(sa.text('DROP SCHEMA IF EXISTS billing CASCADE'))
        connection.execute(sa.text('CREATE SCHEMA billing'))
        connection.execute(sa.text('DROP TABLE IF EXISTS customer CASCADE'))
        connection.execute(sa.text('CREATE TABLE customer (id int PRIMARY KEY, name text)'))
        connection.execute(sa.text('CREATE TABLE billing.customer (id int PRIMARY KEY, name text)'))
        connection.execute(sa.text('CREATE TABLE billing.invoice (id int PRIMARY KEY, '
                                   'customer_id int REFERENCES billing.customer(id))'))
        connection.execute(sa.text("INSERT INTO customer VALUES (1, 'Public Ltd')"))
        connection.execute(sa.text("INSERT INTO billing.customer VALUES (7, 'Billing GmbH')"))
    try:
        with caplog.at_level(logging.WARNING):
            bridge = Bridge.reflect(engine, schemas=[None, 'billing'], token=TOKEN)
        names = {collection.name for collection in bridge.catalog}
        assert {'customer', 'billing.customer', 'billing.invoice'} <= names
        assert not [r for r in caplog.records if 'customer' in r.getMessage()], caplog.records
        found = options(Client(bridge), model='billing.invoice', field='customer_id')
        assert [(o['value'], o['name']) for o in found] == [(7, 'Billing GmbH')]
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text('DROP SCHEMA billing CASCADE'))
            connection.execute(sa.text('DROP TABLE customer'))
        engine.dispose()
