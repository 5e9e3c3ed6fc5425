"""The target the jobs benchmark's ``jet-sqla worker`` runs, and the model and action both sides use."""

from __future__ import annotations

import os

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jet_sqla import Bridge

ACTION = 'recount'


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = 'bench_items'
    id: Mapped[int] = mapped_column(primary_key=True)
    quantity: Mapped[int]
    price: Mapped[int]
    total: Mapped[int]


def declare(bridge: Bridge, chunk_size: int) -> None:
    """The same function twice: in the request (``recount``) and in the background (``recount_background``)."""

    def recount(items: list[Item]) -> None:
        for item in items:
            item.total += item.quantity * item.price + 1  # changes every row on every run: an UPDATE each

    bridge.action(model=Item, for_instance=True, bulk=True, name=ACTION)(recount)
    bridge.action(model=Item, for_instance=True, bulk=True, background=True, chunk_size=chunk_size,
                  name=f'{ACTION}_background')(recount)


def bridge() -> Bridge:
    engine = sa.create_engine(os.environ['JET_SQLA_DATABASE_URL'])
    built = Bridge(Base, engine=engine)
    declare(built, int(os.environ.get('BENCH_CHUNK_SIZE', '500')))
    return built
