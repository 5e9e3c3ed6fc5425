"""Wallets: money moved between rows, for the conservation and soak tests.

gunicorn builds the app with ``tests.apps.wallets:create_app()`` from
``JET_SQLA_DATABASE_URL`` and ``JET_SQLA_TOKEN``. Every action takes a ``ref``
that the client makes unique, so that a test can match each answer it got to
the row the audit log wrote for it.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jet_sqla import ActionError, Bridge
from jet_sqla.audit import action_log
from jet_sqla.audit import metadata as audit_metadata

#: The wallet that ``tax`` pays into.
TREASURY = 1
WALLETS = 20
#: How long ``transfer_unlocked`` waits between reading and writing: wide enough for races to happen.
UNLOCKED_PAUSE_SECONDS = 0.005


class Base(DeclarativeBase):
    pass


class Wallet(Base):
    __tablename__ = 'wallets'

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(50))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(14, 2))


def prepare(url: str, balance: Decimal) -> sa.Engine:
    """Empty the database, then create the wallets, each holding ``balance``, and the audit log."""
    from ..models import drop_everything

    engine = sa.create_engine(url)
    drop_everything(engine)
    Base.metadata.create_all(engine)
    audit_metadata.create_all(engine)  # audit=True needs it; this is what `jet-sqla db upgrade` makes
    fill(engine, balance)
    return engine


def fill(engine: sa.Engine, balance: Decimal) -> None:
    """Empty the audit log and give every wallet ``balance``."""
    with engine.begin() as connection:
        connection.execute(action_log.delete())
        connection.execute(sa.delete(Wallet))
        connection.execute(sa.insert(Wallet), [
            {'id': number, 'name': f'wallet {number}', 'balance': balance} for number in range(1, WALLETS + 1)
        ])


def balances(engine: sa.Engine) -> dict[int, Decimal]:
    with engine.connect() as connection:
        return {row.id: row.balance for row in connection.execute(sa.select(Wallet.id, Wallet.balance))}


def _move(source: Wallet, target: Wallet, amount: Decimal) -> dict[str, Any]:
    if amount <= 0:
        raise ActionError('The amount must be positive')
    if source.balance < amount:
        raise ActionError(f'Insufficient funds in wallet {source.id}')
    source.balance -= amount
    target.balance += amount
    return {'source_balance': source.balance, 'target_balance': target.balance}


def transfer(source: Wallet, target: Wallet, amount: Decimal, ref: str) -> dict[str, Any]:
    """Move ``amount`` from one wallet to another; refused when the source cannot pay."""
    return _move(source, target, amount)


def tax(wallets: list[Wallet], treasury: Wallet, ref: str) -> dict[str, Any]:
    """Move 1 from each selected wallet to the treasury; refused, all of it, if one cannot pay."""
    for wallet in wallets:
        if wallet.balance < 1:
            # Earlier wallets of this list were already debited: the rollback must undo them.
            raise ActionError(f'Wallet {wallet.id} cannot pay the tax')
        wallet.balance -= 1
        treasury.balance += 1
    return {'balances': {str(wallet.id): wallet.balance for wallet in [*wallets, treasury]}}


def transfer_unlocked(source: Wallet, target: Wallet, amount: Decimal, ref: str) -> dict[str, Any]:
    """``transfer`` without row locks: reads, pauses, writes. Loses updates under concurrency, on purpose."""
    time.sleep(UNLOCKED_PAUSE_SECONDS)
    return _move(source, target, amount)


def declare(bridge: Bridge) -> None:
    """Declare the wallet actions on ``bridge``."""
    bridge.action(lock=True)(transfer)
    bridge.action(model=Wallet, for_instance=True, bulk=True, lock=True)(tax)
    bridge.action()(transfer_unlocked)


def make_engine(url: str) -> sa.Engine:
    """The engine a production deployment would use: pre-ping, bounded connect time."""
    connect_args: dict[str, Any] = {}
    if not url.startswith('sqlite'):
        connect_args['connect_timeout'] = 5
    return sa.create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4, connect_args=connect_args)


def create_app() -> Any:
    """The app of one gunicorn worker: the wallet actions, audited."""
    bridge = Bridge(Base, engine=make_engine(os.environ['JET_SQLA_DATABASE_URL']), audit=True)
    declare(bridge)
    return bridge.wsgi_app()
