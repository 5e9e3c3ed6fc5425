"""Models the tests run against, covering the shapes jet_sqla must handle."""

from __future__ import annotations

import enum
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Tier(enum.Enum):
    BRONZE = 'bronze'
    GOLD = 'gold'


class Status(enum.Enum):
    IN_PROGRESS = 'in-progress'
    DONE = 'done'


class User(Base):
    __tablename__ = 'users'

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    tier: Mapped[Tier] = mapped_column(default=Tier.BRONZE)  # stores member names
    status: Mapped[Status] = mapped_column(
        sa.Enum(Status, values_callable=lambda members: [m.value for m in members], name='user_status'),
        default=Status.IN_PROGRESS,
    )
    mood: Mapped[str | None] = mapped_column(sa.Enum('happy', 'grumpy', name='mood'))


class Account(Base):
    __tablename__ = 'accounts'

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey('users.id'))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2), default=Decimal('0'))


class Tag(Base):
    """A string primary key."""

    __tablename__ = 'tags'

    code: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))


class Document(Base):
    """A UUID primary key, a foreign key to a string key, no well-known label column."""

    __tablename__ = 'documents'

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    headline: Mapped[str] = mapped_column(sa.String(200))
    tag_code: Mapped[str | None] = mapped_column(sa.ForeignKey('tags.code'))


class Counter(Base):
    """No string column at all: the label is the primary key."""

    __tablename__ = 'counters'

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


def reset(engine: sa.Engine) -> None:
    """Drop every table (and PostgreSQL enum type) in the database, then create the models'."""
    drop_everything(engine)
    Base.metadata.create_all(engine)


def drop_everything(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        if connection.dialect.name == 'postgresql':
            connection.execute(sa.text('DROP SCHEMA IF EXISTS public CASCADE'))
            connection.execute(sa.text('CREATE SCHEMA public'))
            connection.execute(sa.text('DROP SCHEMA IF EXISTS sales CASCADE'))
            return
        reflected = sa.MetaData()
        reflected.reflect(connection)
        if connection.dialect.name in ('mysql', 'mariadb'):
            connection.execute(sa.text('SET FOREIGN_KEY_CHECKS = 0'))
            for table in reflected.sorted_tables:
                connection.execute(sa.text(f'DROP TABLE IF EXISTS `{table.name}`'))
            connection.execute(sa.text('SET FOREIGN_KEY_CHECKS = 1'))
        else:
            reflected.drop_all(connection)
