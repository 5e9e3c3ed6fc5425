"""get_field_options for collection fields: Enum columns, foreign keys, custom functions."""

from __future__ import annotations

import enum
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import Bridge, Option, colors
from jet_sqla.colors import ColorsByValue, stable_color
from jet_sqla.options import PALETTE, EnumOptions, distinct_colors

from .conftest import TOKEN, Client, StatementLog
from .models import Account, Document, Status, Tag, Tier, User


def options(client: Client, model: str, field: str, **params: Any) -> list[dict[str, Any]]:
    result = client.message('get_field_options', {'model': model, 'field': field, **params})
    assert result.status_code == 200, result.text
    return list(result.json)


def stored(engine: sa.Engine, column: str) -> set[str]:
    """What the database really holds in users.<column>, read without the ORM."""
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(sa.text(f'SELECT {column} FROM users'))}


class TestEnumColumns:
    def test_python_enum_stored_by_name(self, client: Client, engine: sa.Engine) -> None:
        with Session(engine) as session, session.begin():
            session.add_all([User(id=1, name='a', tier=Tier.GOLD), User(id=2, name='b', tier=Tier.BRONZE)])
        found = options(client, 'users', 'tier')
        assert [(o['value'], o['name']) for o in found] == [('BRONZE', 'Bronze'), ('GOLD', 'Gold')]
        assert stored(engine, 'tier') <= {o['value'] for o in found}

    def test_python_enum_with_values_callable(self, client: Client, engine: sa.Engine) -> None:
        with Session(engine) as session, session.begin():
            session.add(User(id=1, name='a', status=Status.IN_PROGRESS))
        found = options(client, 'users', 'status')
        assert [(o['value'], o['name']) for o in found] == [('in-progress', 'In progress'), ('done', 'Done')]
        assert stored(engine, 'status') == {'in-progress'}

    def test_string_enum(self, client: Client) -> None:
        found = options(client, 'users', 'mood')
        assert [(o['value'], o['name']) for o in found] == [('happy', 'Happy'), ('grumpy', 'Grumpy')]

    def test_colors_are_stable_and_from_the_palette(self, client: Client, make_bridge: Any) -> None:
        first = options(client, 'users', 'status')
        again = options(Client(make_bridge()), 'users', 'status')
        assert first == again
        assert all(o['color'] in PALETTE for o in first)

    def test_enum_options_can_be_searched(self, client: Client) -> None:
        assert [o['value'] for o in options(client, 'users', 'status', q='PROG')] == ['in-progress']


def add_users(engine: sa.Engine, names: list[str]) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=name) for i, name in enumerate(names, start=1))


class TestForeignKeys:
    def test_rows_of_the_related_table_with_labels(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, ['Ada', 'Alan', 'Grace'])
        found = options(client, 'accounts', 'owner_id')
        assert [(o['value'], o['name']) for o in found] == [(1, 'Ada'), (2, 'Alan'), (3, 'Grace')]

    def test_string_key_and_title_label(self, client: Client, engine: sa.Engine) -> None:
        with Session(engine) as session, session.begin():
            session.add_all([Tag(code='py', title='Python'), Tag(code='sql', title='SQL')])
        found = options(client, 'documents', 'tag_code')
        assert [(o['value'], o['name']) for o in found] == [('py', 'Python'), ('sql', 'SQL')]

    def test_q_filters_case_insensitively_in_sql(self, client: Client, engine: sa.Engine, statements: StatementLog) -> None:
        add_users(engine, ['Ada', 'Alan', 'Grace', 'adalbert'])
        with statements:
            found = options(client, 'accounts', 'owner_id', q='ADA')
        assert [o['name'] for o in found] == ['Ada', 'adalbert']
        (select,) = statements.selects()
        assert 'LIMIT' in select.upper() and 'LIKE' in select.upper()

    def test_q_wildcards_are_literal(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, ['100% cotton', 'plain', 'under_score', 'underXscore'])
        assert [o['name'] for o in options(client, 'accounts', 'owner_id', q='%')] == ['100% cotton']
        assert [o['name'] for o in options(client, 'accounts', 'owner_id', q='r_s')] == ['under_score']

    def test_q_escape_characters_are_literal(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, ['a/b', 'a//b', 'a\\b', 'a/%b', 'ab'])
        assert [o['name'] for o in options(client, 'accounts', 'owner_id', q='a/b')] == ['a/b']
        assert [o['name'] for o in options(client, 'accounts', 'owner_id', q='//')] == ['a//b']
        assert [o['name'] for o in options(client, 'accounts', 'owner_id', q='\\')] == ['a\\b']
        assert [o['name'] for o in options(client, 'accounts', 'owner_id', q='/%')] == ['a/%b']

    def test_limit_and_offset_page_in_key_order(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, [f'user {i:03}' for i in range(1, 121)])
        assert len(options(client, 'accounts', 'owner_id')) == 50  # the default limit
        page = options(client, 'accounts', 'owner_id', limit=10, offset=20)
        assert [o['value'] for o in page] == list(range(21, 31))

    def test_keyset_paging_with_after(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, [f'user {i}' for i in range(1, 21)])
        page = options(client, 'accounts', 'owner_id', limit=5, after=7)
        assert [o['value'] for o in page] == [8, 9, 10, 11, 12]

    def test_one_query_with_a_limit_whatever_the_table_size(self, client: Client, engine: sa.Engine,
                                                           statements: StatementLog) -> None:
        with engine.begin() as connection:
            connection.execute(sa.insert(User), [{'id': i, 'name': f'u{i}'} for i in range(1, 5001)])
        with statements:
            found = options(client, 'accounts', 'owner_id', limit=3)
        assert len(found) == 3
        assert len(statements.selects()) == 1  # and on PostgreSQL, the statement timeout's set_config
        assert 'LIMIT' in statements.selects()[0].upper()

    @pytest.mark.parametrize(('params', 'field'), [
        ({'limit': 0}, 'limit'), ({'limit': 501}, 'limit'), ({'limit': 'many'}, 'limit'), ({'limit': True}, 'limit'),
        ({'offset': -1}, 'offset'), ({'offset': 1.5}, 'offset'), ({'q': 5}, 'q'), ({'q': 'a\x00b'}, 'q'),
        ({'form': [1]}, 'form'), ({'after': 'not a number'}, 'after'),
    ])
    def test_bad_paging_params_are_400_naming_the_field(self, client: Client, params: dict[str, Any], field: str) -> None:
        result = client.message('get_field_options', {'model': 'accounts', 'field': 'owner_id', **params})
        assert result.status_code == 400, result.text
        assert result.json['code'] == 'invalid_params'
        assert field in result.json['fields']


class TestCustom:
    def test_custom_options_override_derived_ones_and_see_the_form(self, bridge: Bridge, client: Client) -> None:
        @bridge.field_options(User, 'tier')
        def tiers(form: dict[str, Any]) -> list[Option]:
            if form.get('vip'):
                return [Option('GOLD', 'Gold only', color='yellow')]
            return [Option('BRONZE', 'Bronze'), {'value': 'GOLD', 'name': 'Gold'}]  # type: ignore[list-item]

        assert options(client, 'users', 'tier', form={'vip': True}) == [
            {'value': 'GOLD', 'name': 'Gold only', 'color': 'yellow'}]
        assert [o['name'] for o in options(client, 'users', 'tier')] == ['Bronze', 'Gold']

    def test_custom_options_for_a_field_that_is_not_a_column(self, bridge: Bridge, client: Client) -> None:
        @bridge.field_options('users', 'city')
        def cities(form: dict[str, Any], q: str | None, limit: int) -> list[Option]:
            cities = {'italy': ['Rome', 'Milan'], 'uk': ['London']}.get(str(form.get('country')), [])
            return [Option(city, city) for city in cities if not q or q.lower() in city.lower()][:limit]

        assert [o['value'] for o in options(client, 'users', 'city', form={'country': 'italy'})] == ['Rome', 'Milan']
        assert [o['value'] for o in options(client, 'users', 'city', form={'country': 'italy'}, q='mi')] == ['Milan']
        (london,) = options(client, 'users', 'city', form={'country': 'uk'})
        assert (london['value'], london['name']) == ('London', 'London') and london['color'] in PALETTE

    def test_custom_function_may_ask_for_the_session(self, bridge: Bridge, client: Client, engine: sa.Engine) -> None:
        add_users(engine, ['Ada', 'Alan'])

        @bridge.field_options(Account, 'owner_id')
        def owners(session: Session) -> list[Option]:
            return [Option(user.id, user.name.upper()) for user in session.scalars(sa.select(User).order_by(User.id))]

        assert [o['name'] for o in options(client, 'accounts', 'owner_id')] == ['ADA', 'ALAN']

    def test_custom_values_with_keys_that_are_not_strings(self, bridge: Bridge, client: Client) -> None:
        """The answer is encoded on the fast path for string keys; a value with others still goes out."""
        @bridge.field_options('users', 'city')
        def cities() -> list[Option]:
            return [Option({1: 'Rome', 'zip': 100}, 'Rome', color='red')]

        assert options(client, 'users', 'city') == [{'value': {'1': 'Rome', 'zip': 100}, 'name': 'Rome', 'color': 'red'}]

    def test_custom_function_with_unknown_parameters_is_refused_at_declaration(self, bridge: Bridge) -> None:
        with pytest.raises(TypeError, match='asks for country'):
            @bridge.field_options(User, 'tier')
            def bad(country: str) -> list[Option]:
                return []

    def test_two_functions_for_one_field_is_an_error(self, bridge: Bridge) -> None:
        bridge.field_options(User, 'tier')(lambda: [])
        with pytest.raises(ValueError, match='already has an options function'):
            bridge.field_options(User, 'tier')(lambda: [])


class TestErrors:
    def test_unknown_collection_is_404(self, client: Client) -> None:
        result = client.message('get_field_options', {'model': 'nope', 'field': 'x'})
        assert result.status_code == 404
        assert result.json['code'] == 'not_found' and "'nope'" in result.json['detail']

    @pytest.mark.parametrize('field', ['nope', 'name'])
    def test_unknown_field_or_field_without_options_is_404(self, client: Client, field: str) -> None:
        result = client.message('get_field_options', {'model': 'users', 'field': field})
        assert result.status_code == 404
        assert result.json['code'] == 'not_found' and field in result.json['detail']

    @pytest.mark.parametrize('params', [{'model': 'users'}, {'model': 'users', 'field': 3}, {'field': 'tier'}])
    def test_missing_model_or_field_is_400(self, client: Client, params: dict[str, Any]) -> None:
        result = client.message('get_field_options', params)
        assert result.status_code == 400
        assert result.json['code'] == 'invalid_params'


def test_foreign_key_column_of_a_table_with_a_uuid_key(client: Client, engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add(Tag(code='t', title='T'))
        session.flush()
        session.add(Document(headline='first', tag_code='t'))
    assert [(o['value'], o['name']) for o in options(client, 'documents', 'tag_code')] == [('t', 'T')]


class TestEnumColors:
    """Within one enum, no two members share a color while the palette has one left."""

    def test_the_shop_enums_reported_sharing_colors(self) -> None:
        from jet_sqla.examples.shop.models import Order, OrderStatus, User

        for column, members in ((User.__table__.c.tier, 3), (Order.__table__.c.status, len(OrderStatus))):
            found = [option.to_dict() for option in EnumOptions.from_column_type(column.type).static()]
            assert len(found) == members and len({o['color'] for o in found}) == members, found
        statuses = {o.value: o.color for o in EnumOptions.from_column_type(Order.__table__.c.status.type).static()}
        assert statuses['shipped'] != statuses['cancelled']

    def test_available_and_lost(self) -> None:
        class Copy(enum.Enum):
            AVAILABLE = 'available'
            ON_LOAN = 'on_loan'
            LOST = 'lost'

        column = EnumOptions.from_column_type(sa.Enum(Copy)).static()
        param = EnumOptions.from_enum_class(Copy).static()
        assert [o.value for o in column] == ['AVAILABLE', 'ON_LOAN', 'LOST']
        assert [o.value for o in param] == ['available', 'on_loan', 'lost']
        assert [(o.name, o.color) for o in column] == [(o.name, o.color) for o in param]
        assert [o.name for o in param] == ['Available', 'On loan', 'Lost']
        assert len({o.color for o in param}) == 3

    @pytest.mark.parametrize('size', [2, 7, len(PALETTE), len(PALETTE) + 5, 3 * len(PALETTE)])
    def test_distinct_until_the_palette_runs_out(self, size: int) -> None:
        members = enum.Enum('Many', [f'M{i}' for i in range(size)])  # type: ignore[misc]
        colors = [o.color for o in EnumOptions.from_enum_class(members).static()]
        assert all(color in PALETTE for color in colors)
        for start in range(0, size, len(PALETTE)):
            run = colors[start:start + len(PALETTE)]
            assert len(set(run)) == len(run), colors

    def test_a_member_keeps_its_color_when_others_are_appended(self) -> None:
        names = ['NEW', 'PAID', 'SHIPPED']
        assert distinct_colors(names) == distinct_colors([*names, 'CANCELLED', 'REFUNDED'])[:3]


class TestForeignKeyAnswers:
    """The answer is built straight from the rows, with colors remembered by value: still each value's own."""

    def test_each_option_is_what_an_option_of_its_row_says(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, ['Ada', 'Alan', 'Grace'])
        with Session(engine) as session, session.begin():
            session.add_all([Tag(code='py', title='Python'), Tag(code='1', title='One')])
        for _ in range(2):  # the colors of the second answer come from what the first remembered
            assert options(client, 'accounts', 'owner_id') == [
                Option(key, name).to_dict() for key, name in [(1, 'Ada'), (2, 'Alan'), (3, 'Grace')]]
            # A string key '1' gets the color of the text '1', as the integer 1 of the other field does.
            assert options(client, 'documents', 'tag_code') == [
                Option(key, name).to_dict() for key, name in [('1', 'One'), ('py', 'Python')]]

    def test_a_changed_label_or_a_new_row_is_seen_on_the_next_page(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, ['Ada', 'Alan'])
        assert [o['name'] for o in options(client, 'accounts', 'owner_id')] == ['Ada', 'Alan']
        with engine.begin() as connection:
            connection.execute(sa.update(User).where(User.id == 1).values(name='Ada Lovelace'))
            connection.execute(sa.insert(User), [{'id': 3, 'name': 'Grace'}])
        found = options(client, 'accounts', 'owner_id')
        assert [(o['value'], o['name']) for o in found] == [(1, 'Ada Lovelace'), (2, 'Alan'), (3, 'Grace')]
        assert [o['color'] for o in found] == [stable_color(value) for value in (1, 2, 3)]

    def test_two_bridges_give_a_value_the_same_color(self, client: Client, make_bridge: Any,
                                                     engine: sa.Engine) -> None:
        add_users(engine, [f'user {i}' for i in range(1, 8)])
        assert options(client, 'accounts', 'owner_id', after=2) == options(
            Client(make_bridge()), 'accounts', 'owner_id', after=2)


class TestSourcesFoundOnce:
    """Which source answers a field is remembered, keyed by collection and field."""

    def test_a_custom_function_declared_after_a_derived_answer_takes_over(self, bridge: Bridge, client: Client,
                                                                           engine: sa.Engine) -> None:
        add_users(engine, ['Ada'])
        assert [o['name'] for o in options(client, 'accounts', 'owner_id')] == ['Ada']

        @bridge.field_options(Account, 'owner_id')
        def owners() -> list[Option]:
            return [Option(1, 'custom Ada')]

        assert [o['name'] for o in options(client, 'accounts', 'owner_id')] == ['custom Ada']

    def test_each_collection_and_field_keeps_its_own(self, client: Client, engine: sa.Engine) -> None:
        add_users(engine, ['Ada'])
        with Session(engine) as session, session.begin():
            session.add(Tag(code='py', title='Python'))
        for _ in range(2):
            assert [o['name'] for o in options(client, 'accounts', 'owner_id')] == ['Ada']
            assert [o['name'] for o in options(client, 'documents', 'tag_code')] == ['Python']
            assert [o['value'] for o in options(client, 'users', 'status')] == ['in-progress', 'done']
            # The same field name on a collection without it is still unknown there.
            assert client.message('get_field_options', {'model': 'users', 'field': 'owner_id'}).status_code == 404


def test_colors_by_value_are_stable_colors_and_start_over_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(colors, 'REMEMBERED', 3)
    remembered = ColorsByValue()
    keys = [1, 2, 3, 4, 'a', uuid.UUID(int=5)]
    assert [remembered[key] for key in keys] == [stable_color(key) for key in keys]
    assert len(remembered) <= 3
    with pytest.raises(TypeError):
        remembered[[1]]  # type: ignore[index]  # unhashable: the caller falls back to stable_color


class _ListKey(sa.types.TypeDecorator[Any]):
    """A key read back as a list: unhashable, so no cache can remember its color."""

    impl = sa.String(20)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else list(value)


def test_unhashable_keys_still_get_their_colors(tmp_path: Any) -> None:
    class Base(DeclarativeBase):
        pass

    class Shelf(Base):
        __tablename__ = 'shelves'
        code: Mapped[str] = mapped_column(_ListKey(), primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(20))

    class Book(Base):
        __tablename__ = 'books'
        id: Mapped[int] = mapped_column(primary_key=True)
        shelf_code: Mapped[str] = mapped_column(sa.ForeignKey('shelves.code'))

    engine = sa.create_engine(f'sqlite:///{tmp_path / "shelves.db"}')
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.insert(Shelf), [{'code': 'ab', 'name': 'first'}, {'code': 'cd', 'name': 'second'}])
    found = Client(Bridge(Base, engine=engine, token=TOKEN)).message(
        'get_field_options', {'model': 'books', 'field': 'shelf_code'})
    assert found.status_code == 200, found.text
    assert found.json == [{'value': key, 'name': name, 'color': stable_color(key)}
                          for key, name in ((['a', 'b'], 'first'), (['c', 'd'], 'second'))]
    engine.dispose()
