"""The shop served to Jet Admin: its actions and options, in plain typed Python.

Run it with ``jet-sqla demo``, or ``gunicorn 'jet_sqla.examples.shop.jet:app'``
with ``JET_SQLA_TOKEN`` set.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import ActionContext, ActionError, Bridge, Option, Param, migrations

from .models import Account, Base, Order, OrderStatus, Tier, Transfer, User
from .seed import CITIES, seed

log = logging.getLogger(__name__)

# pool_timeout: a busy server answers 503 "try again" well before a client gives up (SQLAlchemy waits 30 s).
engine = sa.create_engine(os.environ.get('JET_SQLA_DATABASE_URL', 'sqlite:///shop.db'), pool_pre_ping=True,
                         pool_timeout=5)
if not os.environ.get('JET_SQLA_INSPECTING'):
    # `jet-sqla actions` only reads: it sets JET_SQLA_INSPECTING, and nothing is created, seeded or migrated.
    seed(engine)
    # jet_sqla's own tables: the background action below keeps its jobs there (`jet-sqla db upgrade` does the same).
    migrations.upgrade(engine)

bridge = Bridge(
    Base,
    engine=engine,
    console=os.environ.get('JET_SQLA_CONSOLE', '') == '1',
)


@bridge.action(model=User, for_instance=True, bulk=True)
def mail_users(users: list[User], subject: str, ctx: ActionContext) -> dict[str, int]:
    """Send an e-mail to the selected users."""
    now = datetime.now(timezone.utc)
    for user in users:
        log.info('mailing %s: %s', user.email, subject)
        user.last_mailed_at = now
    return {'sent': len(users)}


@bridge.action(model=User, for_instance=True)
def promote(user: User) -> None:
    """Move a user to the gold tier."""
    if user.tier is Tier.GOLD:
        raise ActionError(f'{user.name} is already gold')
    user.tier = Tier.GOLD


@bridge.action(model=User)
def refresh_users_status(session: Session) -> dict[str, int]:
    """Deactivate users who have no orders."""
    no_orders = ~sa.exists().where(Order.user_id == User.id)
    result = session.execute(sa.update(User).where(no_orders, User.active.is_(True)).values(active=False))
    return {'deactivated': result.rowcount}


@bridge.action(model=Order, for_instance=True, bulk=True, lock=True)
def cancel_orders(orders: list[Order], reason: Annotated[str, Param(field='TextField')] = '') -> dict[str, int]:
    """Cancel the selected orders; shipped ones cannot be cancelled."""
    shipped = [order.id for order in orders if order.status is OrderStatus.SHIPPED]
    if shipped:
        raise ActionError(f'Orders {shipped} have shipped and cannot be cancelled')
    for order in orders:
        order.status = OrderStatus.CANCELLED
    return {'cancelled': len(orders)}


@bridge.action(model=Order, for_instance=True, bulk=True, background=True, chunk_size=2)
def apply_discount(orders: list[Order], percent: int = 10) -> None:
    """Lower the selected orders' totals by a percentage, in the background, two orders per chunk."""
    if not 0 < percent < 100:
        raise ActionError('The discount is a percentage between 1 and 99')
    for order in orders:
        order.total = (order.total * (100 - percent) / 100).quantize(Decimal('0.01'))


@bridge.action()
def rebuild_index(session: Session) -> dict[str, int]:
    """Recount the rows of every table (a stand-in for rebuilding a search index)."""
    return {
        table.name: session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
        for table in Base.metadata.sorted_tables
    }


@bridge.action(lock=True)
def account_transfer(
    account_from: Account,
    amount_from: Decimal,
    account_to: Account,
    amount_to: Decimal,
    session: Session,
    description: Annotated[str, Param(field='TextField', label='Description')] = '',
    when: datetime | None = None,
) -> dict[str, str]:
    """Move money between two accounts (amounts may differ, as with a currency exchange)."""
    if account_from.id == account_to.id:
        raise ActionError('Pick two different accounts')
    if amount_from <= 0 or amount_to <= 0:
        raise ActionError('Amounts must be positive')
    if account_from.balance < amount_from:
        raise ActionError(f'{account_from.name} has only {account_from.balance}')
    account_from.balance -= amount_from
    account_to.balance += amount_to
    session.add(Transfer(account_from_id=account_from.id, account_to_id=account_to.id, amount=amount_from,
                         note=description, created_at=when or datetime.now(timezone.utc)))
    return {'from_balance': str(account_from.balance), 'to_balance': str(account_to.balance)}


@bridge.field_options(Order, 'city')
def city_options(form: dict[str, object]) -> list[Option]:
    """Cities depend on the country chosen in the same form."""
    country = form.get('country')
    cities = CITIES.get(country, []) if isinstance(country, str) else [c for cs in CITIES.values() for c in cs]
    return [Option(city, city) for city in cities]


def __getattr__(name: str) -> Any:
    """``app``, built on first use and kept: ``gunicorn 'jet_sqla.examples.shop.jet:app'`` builds it at start.

    Inspecting the example (``jet-sqla actions jet_sqla.examples.shop.jet:bridge``) never does: building the
    app checks jet_sqla's tables, which an inspection neither creates nor needs.
    """
    if name == 'app':
        built = bridge.wsgi_app()
        globals()['app'] = built
        return built
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
