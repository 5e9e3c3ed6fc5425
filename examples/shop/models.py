"""The shop's models: what a SQLAlchemy user already has before meeting jet_sqla."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Tier(enum.Enum):
    BRONZE = 'bronze'
    SILVER = 'silver'
    GOLD = 'gold'


class OrderStatus(enum.Enum):
    NEW = 'new'
    PAID = 'paid'
    SHIPPED = 'shipped'
    CANCELLED = 'cancelled'


class User(Base):
    __tablename__ = 'users'

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str] = mapped_column(sa.String(200), unique=True)
    # Stored as the member names ('BRONZE'); options come automatically.
    tier: Mapped[Tier] = mapped_column(default=Tier.BRONZE)
    active: Mapped[bool] = mapped_column(default=True)
    last_mailed_at: Mapped[datetime | None]

    accounts: Mapped[list[Account]] = relationship(back_populates='owner')


class Account(Base):
    __tablename__ = 'accounts'

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey('users.id'))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2), default=Decimal('0.00'))

    owner: Mapped[User] = relationship(back_populates='accounts')


class Order(Base):
    __tablename__ = 'orders'

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey('users.id'))
    # Stored as the values ('paid'), thanks to values_callable.
    status: Mapped[OrderStatus] = mapped_column(
        sa.Enum(OrderStatus, values_callable=lambda members: [member.value for member in members]),
        default=OrderStatus.NEW,
    )
    country: Mapped[str] = mapped_column(sa.Enum('italy', 'uk', 'france', name='country'))
    city: Mapped[str] = mapped_column(sa.String(100))
    total: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))


class Transfer(Base):
    __tablename__ = 'transfers'

    id: Mapped[int] = mapped_column(primary_key=True)
    account_from_id: Mapped[int] = mapped_column(sa.ForeignKey('accounts.id'))
    account_to_id: Mapped[int] = mapped_column(sa.ForeignKey('accounts.id'))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    note: Mapped[str] = mapped_column(sa.Text, default='')
    created_at: Mapped[datetime]
