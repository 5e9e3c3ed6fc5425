"""Bridge(..., session_factory=): the app's own sessions, with their filters, hooks and binds.

A soft-delete filter (``do_orm_execute`` + ``with_loader_criteria``) and a
``before_flush`` timestamp hook live on the app's sessionmaker, as they do in
real apps. jet_sqla must use that sessionmaker for the action, for loading
ids and for option queries, and still own the one transaction per run.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    Session,
    mapped_column,
    sessionmaker,
)

from jet_sqla import ActionContext, ActionError, Bridge

from .conftest import TOKEN, Client, database_url


class Base(DeclarativeBase):
    pass


class Stage(enum.Enum):
    LEAD = 'lead'
    CUSTOMER = 'customer'


class Company(Base):
    __tablename__ = 'sf_companies'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    deleted: Mapped[bool] = mapped_column(default=False)


class Contact(Base):
    __tablename__ = 'sf_contacts'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    stage: Mapped[Stage] = mapped_column(sa.Enum(Stage, name='sf_stage'), default=Stage.LEAD)
    company_id: Mapped[int | None] = mapped_column(sa.ForeignKey('sf_companies.id'))
    deleted: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True))


class AppSession(Session):
    """The app's own Session class: jet_sqla must hand it to the action."""


def make_session_factory(engine: sa.Engine, class_: type[Session] = Session) -> sessionmaker[Session]:
    """The app's sessionmaker: soft-deleted rows are invisible, and every flush stamps updated_at."""
    factory = sessionmaker(engine, class_=class_)

    @event.listens_for(factory, 'do_orm_execute')
    def hide_deleted(state: ORMExecuteState) -> None:
        if state.is_select and not state.execution_options.get('include_deleted', False):
            state.statement = state.statement.options(
                sa.orm.with_loader_criteria(Company, Company.deleted.is_(False)),
                sa.orm.with_loader_criteria(Contact, Contact.deleted.is_(False)),
            )

    @event.listens_for(factory, 'before_flush')
    def stamp(session: Session, context: Any, instances: Any) -> None:
        for instance in session.dirty | session.new:
            if isinstance(instance, Contact):
                instance.updated_at = datetime.now(UTC)

    return factory


@pytest.fixture(params=['sqlite', 'postgresql'])
def engine(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[sa.Engine]:
    engine = sa.create_engine(database_url(request.param, tmp_path))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add_all([
            Company(id=1, name='Acme'), Company(id=2, name='Gone Inc', deleted=True),
            Contact(id=1, name='Ada', company_id=1), Contact(id=2, name='Bob', company_id=1, deleted=True),
        ])
    yield engine
    Base.metadata.drop_all(engine)
    engine.dispose()


def build(factory: Any, **kwargs: Any) -> tuple[Bridge, Client]:
    bridge = Bridge(Base, session_factory=factory, token=TOKEN, **kwargs)

    @bridge.action(model=Contact, for_instance=True, bulk=True)
    def promote(contacts: list[Contact], ctx: ActionContext) -> dict[str, Any]:
        for contact in contacts:
            contact.stage = Stage.CUSTOMER
        return {'session_class': type(ctx.session).__name__, 'names': [c.name for c in contacts]}

    @bridge.action(model=Contact, for_instance=True)
    def promote_then_fail(contact: Contact) -> None:
        contact.stage = Stage.CUSTOMER
        raise ActionError('changed my mind')

    @bridge.action()
    def move(contact: Contact, company: Company, session: Session) -> dict[str, int]:
        contact.company_id = company.id
        visible = session.scalars(sa.select(Contact)).all()
        return {'visible_contacts': len(visible)}

    return bridge, Client(bridge)


def stored(engine: sa.Engine, contact_id: int) -> Contact:
    with Session(engine) as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        session.expunge(contact)
        return contact


def test_actions_run_in_the_factorys_sessions_with_its_hooks(engine: sa.Engine) -> None:
    factory = make_session_factory(engine, AppSession)
    bridge, client = build(factory)
    assert bridge.engine is engine  # taken from the factory: no engine= needed
    result = client.execute('promote', 'sf_contacts', ids=[1])
    assert result.status_code == 200, result.text
    assert result.json['session_class'] == 'AppSession'
    contact = stored(engine, 1)
    assert contact.stage is Stage.CUSTOMER
    assert contact.updated_at is not None  # the factory's before_flush hook ran


def test_a_soft_deleted_id_is_missing(engine: sa.Engine) -> None:
    _, client = build(make_session_factory(engine))
    result = client.execute('promote', 'sf_contacts', ids=[1, 2])
    assert result.status_code == 404, result.text
    assert result.json['missing_ids'] == [2]
    assert stored(engine, 1).stage is Stage.LEAD  # nothing half-applied
    assert stored(engine, 2).stage is Stage.LEAD


def test_a_soft_deleted_foreign_key_param_is_missing_and_filters_apply_inside(engine: sa.Engine) -> None:
    _, client = build(make_session_factory(engine))
    refused = client.execute('move', contact=1, company=2)
    assert refused.status_code == 400, refused.text
    assert 'company' in refused.text
    moved = client.execute('move', contact=1, company=1)
    assert moved.status_code == 200, moved.text
    assert moved.json['visible_contacts'] == 1  # the action's own queries are filtered too


def test_option_queries_hide_soft_deleted_rows(engine: sa.Engine) -> None:
    _, client = build(make_session_factory(engine))
    options = client.message('get_field_options', {'model': 'sf_contacts', 'field': 'company_id'})
    assert options.status_code == 200, options.text
    assert [option['value'] for option in options.json] == [1]
    param = client.message('get_field_options', {'action': 'move', 'field': 'company'})
    assert [option['value'] for option in param.json] == [1]
    enum_options = client.message('get_field_options', {'model': 'sf_contacts', 'field': 'stage'})
    assert [option['value'] for option in enum_options.json] == ['LEAD', 'CUSTOMER']


def test_the_console_listing_hides_soft_deleted_rows(engine: sa.Engine) -> None:
    _, client = build(make_session_factory(engine), console=True)
    listed = client.message('list_records', {'model': 'sf_contacts'})
    assert listed.status_code == 200, listed.text
    assert [record['name'] for record in listed.json['records']] == ['Ada']


def test_without_the_factory_soft_deleted_rows_show(engine: sa.Engine) -> None:
    """The check above can fail: jet_sqla's private sessions know nothing of the filter."""
    bridge = Bridge(Base, engine=engine, token=TOKEN)
    options = Client(bridge).message('get_field_options', {'model': 'sf_contacts', 'field': 'company_id'})
    assert [option['value'] for option in options.json] == [1, 2]
    listed = Client(Bridge(Base, engine=engine, token=TOKEN, console=True)).message(
        'list_records', {'model': 'sf_contacts'})
    assert [record['name'] for record in listed.json['records']] == ['Ada', 'Bob']


def test_a_failed_run_is_rolled_back_by_jet_sqla(engine: sa.Engine) -> None:
    _, client = build(make_session_factory(engine))
    result = client.execute('promote_then_fail', 'sf_contacts', ids=[1])
    assert result.status_code == 400, result.text
    assert 'changed my mind' in result.text
    assert stored(engine, 1).stage is Stage.LEAD


def test_any_zero_argument_callable_returning_a_session(engine: sa.Engine) -> None:
    factory = make_session_factory(engine)
    calls: list[int] = []

    def open_session() -> Session:
        calls.append(1)
        return factory()

    _, client = build(open_session)
    result = client.execute('promote', 'sf_contacts', ids=[1])
    assert result.status_code == 200, result.text
    assert calls  # the callable made the run's session
    assert stored(engine, 1).stage is Stage.CUSTOMER


def test_binds_of_the_factory_are_used(engine: sa.Engine) -> None:
    # Bound per model only: no default bind, and still no engine= needed.
    factory = make_session_factory(engine)
    factory.configure(bind=None, binds={Base: engine})
    bridge, client = build(factory)
    assert bridge.engine is engine
    assert client.execute('promote', 'sf_contacts', ids=[1]).status_code == 200
    assert stored(engine, 1).stage is Stage.CUSTOMER


def test_an_unbound_factory_or_a_non_session_is_refused() -> None:
    with pytest.raises(TypeError, match='bound to no engine'):
        Bridge(Base, session_factory=sessionmaker(), token=TOKEN)
    with pytest.raises(TypeError, match='must return a sqlalchemy.orm.Session'):
        Bridge(Base, session_factory=lambda: 'nope', token=TOKEN)  # type: ignore[arg-type, return-value]
