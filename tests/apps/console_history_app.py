"""An audited app with the console on, for the browser tests of Preview, History and Undo.

gunicorn builds it with ``tests.apps.console_history_app:create_app()`` from
``JET_SQLA_DATABASE_URL`` and ``JET_SQLA_TOKEN``; the test migrates and seeds
the database first.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge

from ..models import Account, Base


def add_interest(rate: Decimal, session: Session) -> dict[str, int]:
    """Add interest to every account."""
    accounts = session.scalars(sa.select(Account).order_by(Account.id)).all()
    for account in accounts:
        account.balance = (account.balance * (1 + rate)).quantize(Decimal('0.01'))
    return {'accounts': len(accounts)}


def mail_statements(session: Session) -> None:
    """Mail every owner a statement: nothing to preview, it cannot be taken back."""


def create_app() -> Any:
    bridge = Bridge(Base, engine=sa.create_engine(os.environ['JET_SQLA_DATABASE_URL']), audit=True, console=True)
    bridge.action(model=Account)(add_interest)
    bridge.action(model=Account, preview=False)(mail_statements)
    return bridge.wsgi_app()
