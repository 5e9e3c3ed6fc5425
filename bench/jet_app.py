"""The jet_sqla side of the HTTP benchmarks: 20 declared actions over a SQLite database.

Its ``get_action_list`` answer is byte for byte what ``bench.bare_app`` writes
(``bench.payloads.ACTIONS``), so both sides send the same bytes. Serve it with
``python -m gunicorn 'bench.jet_app:from_environment()'``; it reads:

- ``BENCH_DB``: the SQLite file (created and seeded by :func:`prepare_database`);
- ``BENCH_TOKEN``: the shared secret (default ``bench.payloads.BENCH_TOKEN``);
- ``BENCH_SLOW_SECONDS``: when set, also declares the common action ``slow``,
  which sleeps that long (the starvation benchmark).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import falcon
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.payloads import ACTIONS, BENCH_TOKEN
from jet_sqla import Bridge, Param

SLOW_ACTION = 'slow'
SEED_ROWS = 100


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = 'users'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str] = mapped_column(sa.String(200))


class Order(Base):
    __tablename__ = 'orders'
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey('users.id'))
    total: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))


class Account(Base):
    __tablename__ = 'accounts'
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    balance: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))


class Invoice(Base):
    __tablename__ = 'invoices'
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.ForeignKey('orders.id'))
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))


def prepare_database(path: str | Path, rows: int = SEED_ROWS) -> Path:
    """Create the benchmark tables in the SQLite file ``path`` and seed ``rows`` rows in each."""
    path = Path(path)
    engine = sa.create_engine(f'sqlite:///{path}')
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with engine.begin() as connection:
            numbers = range(1, rows + 1)
            connection.execute(sa.insert(User), [{'id': i, 'name': f'user {i}', 'email': f'u{i}@example.com'}
                                                 for i in numbers])
            connection.execute(sa.insert(Account), [{'id': i, 'name': f'account {i}', 'balance': Decimal(i)}
                                                    for i in numbers])
            connection.execute(sa.insert(Order), [{'id': i, 'user_id': i, 'total': Decimal(i)} for i in numbers])
            connection.execute(sa.insert(Invoice), [{'id': i, 'order_id': i, 'amount': Decimal(i)}
                                                    for i in numbers])
    finally:
        engine.dispose()
    return path


_PARAM_TYPES: dict[str, type[Any]] = {'ForeignKey': Account}


def _noop(for_instance: bool) -> Callable[..., None]:
    """A fresh do-nothing action function (one per action: the registry keys actions by function)."""
    if for_instance:
        def run_on_records(records: Any, **form: Any) -> None:
            return None
        return run_on_records

    def run(**form: Any) -> None:
        return None
    return run


def declare_benchmark_actions(bridge: Bridge, specs: list[dict[str, Any]] = ACTIONS) -> None:
    """Declare one do-nothing action per description in ``specs`` (the shape get_action_list sends)."""
    for spec in specs:
        model_action: Mapping[str, Any] | None = spec.get('model_action')
        params = [
            Param(p['name'], field=p['field'], required=p['required'], type=_PARAM_TYPES.get(p['field']))
            for p in spec['params']
        ]
        for_instance = bool(model_action and model_action['for_instance'])
        declare = bridge.action(
            name=spec['name'],
            model=model_action['model'] if model_action else None,
            for_instance=for_instance,
            bulk=bool(model_action and model_action['bulk']),
            params=params,
        )
        declare(_noop(for_instance))


def create_app(database: str | Path, token: str = BENCH_TOKEN, slow_seconds: float | None = None) -> falcon.App:
    """The benchmark's jet_sqla WSGI app over the SQLite file ``database``."""
    engine = sa.create_engine(f'sqlite:///{database}')
    bridge = Bridge(Base, engine=engine, token=token)
    declare_benchmark_actions(bridge)
    if slow_seconds is not None:
        seconds = slow_seconds

        @bridge.action(name=SLOW_ACTION)
        def slow() -> None:
            time.sleep(seconds)  # an action that waits on something outside: it holds its thread, not the CPU

    return bridge.wsgi_app()


def from_environment() -> falcon.App:
    """The app configured by ``BENCH_DB``, ``BENCH_TOKEN`` and ``BENCH_SLOW_SECONDS`` (a gunicorn factory)."""
    database = os.environ.get('BENCH_DB')
    if not database:
        raise RuntimeError('set BENCH_DB to the SQLite file made by bench.jet_app.prepare_database')
    slow = os.environ.get('BENCH_SLOW_SECONDS')
    return create_app(database, os.environ.get('BENCH_TOKEN', BENCH_TOKEN), float(slow) if slow else None)

