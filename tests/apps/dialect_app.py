"""The app the dialect's end-to-end tests serve under gunicorn: Jet's permissions on, a bulk action on counters.

Token, JWT key and project come from the environment (``JET_SQLA_*``), as in production.
"""

from __future__ import annotations

import os
from decimal import Decimal

import falcon
import sqlalchemy as sa

from jet_sqla import ActionContext, ActionError, Bridge

from ..models import Base, Counter


def create_app() -> falcon.App:
    bridge = Bridge(Base, engine=sa.create_engine(os.environ['JET_SQLA_DATABASE_URL']), jet_permissions=True,
                    max_ids=50)

    @bridge.action(model=Counter, for_instance=True, bulk=True, label='Add', icon='plus')
    def add(counters: list[Counter], ctx: ActionContext, amount: Decimal) -> dict[str, object]:
        if amount > 100:
            raise ActionError('At most 100 at a time', field='amount')
        for counter in counters:
            counter.value += int(amount)
        return {'ids': ctx.ids}

    return bridge.wsgi_app()
