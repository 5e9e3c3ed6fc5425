"""The app the console tests and the README screenshot drive, and how to serve it.

It is the example shop plus one record action whose form shows most field
types. Importing this module has no side effects: gunicorn builds the app with
``create_app()`` in its own process, from the ``JET_SQLA_*`` environment.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from jet_sqla import Param
from jet_sqla.examples.shop.models import Order, OrderStatus

from .server import REPO, gunicorn

__all__ = ['CHROMIUM', 'REPO', 'TOKEN', 'Server', 'create_app', 'serve']

CHROMIUM = os.environ.get('JET_SQLA_TEST_CHROMIUM', '/usr/bin/chromium')
TOKEN = 'console-token'


class Carrier(enum.Enum):
    POST = 'post'
    COURIER = 'courier'
    PICKUP = 'pickup'


def ship_orders(
    orders: list[Order],
    carrier: Carrier,
    ship_on: date,
    packages: int,
    express: bool = False,
    note: Annotated[str, Param(field='TextField', description='Printed on the packing slip.')] = '',
) -> dict[str, Any]:
    """Mark the selected orders as shipped."""
    for order in orders:
        order.status = OrderStatus.SHIPPED
    # Echo the coerced values so that a test can see what each input sent.
    return {'shipped': [order.id for order in orders], 'carrier': carrier.name, 'ship_on': ship_on.isoformat(),
            'packages': packages, 'express': express, 'note': note}


def slow_touch(orders: list[Order], seconds: float = 1.0) -> None:
    """A background action slow enough to cancel: one order per chunk, ``seconds`` each."""
    import time

    time.sleep(seconds)


def create_app() -> Any:
    """The shop's app, with ``ship_orders`` and ``slow_touch`` declared on its bridge."""
    from jet_sqla.examples.shop import jet

    jet.bridge.action(model=Order, for_instance=True, bulk=True)(ship_orders)
    jet.bridge.action(model=Order, for_instance=True, bulk=True, background=True, chunk_size=1)(slow_touch)
    return jet.app


@dataclass(frozen=True)
class Server:
    url: str
    database_url: str


@contextlib.contextmanager
def serve(database_url: str, *, log_path: Path) -> Iterator[Server]:
    """Run ``create_app()`` with the console on, under gunicorn on a free loopback port; stopped on exit."""
    with gunicorn('tests.apps.console_app:create_app()', database_url=database_url, token=TOKEN,
                  log_path=log_path, workers=1, threads=4, env={'JET_SQLA_CONSOLE': '1'}) as server:
        yield Server(f'http://{server.host}:{server.port}', database_url)
