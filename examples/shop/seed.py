"""Create the shop's tables and fill them with a few rows, once."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .models import Account, Base, Order, OrderStatus, Tier, User

CITIES = {'italy': ['Rome', 'Milan', 'Turin'], 'uk': ['London', 'Leeds'], 'france': ['Paris', 'Lyon']}


def seed(engine: sa.Engine) -> bool:
    """Create the tables and rows if the database is empty; return True if it seeded."""
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        if session.scalar(sa.select(sa.func.count()).select_from(User)):
            return False
        names = ['Ada Lovelace', 'Alan Turing', 'Grace Hopper', 'Edsger Dijkstra', 'Barbara Liskov',
                 'Donald Knuth', 'Margaret Hamilton', 'Ken Thompson']
        tiers = list(Tier)
        users = [
            User(name=name, email=name.lower().replace(' ', '.') + '@example.com', tier=tiers[i % len(tiers)])
            for i, name in enumerate(names)
        ]
        session.add_all(users)
        session.flush()
        for user in users:
            session.add(Account(name=f"{user.name.split()[0]}'s account", owner=user, balance=Decimal('100.00')))
        countries = list(CITIES)
        for i, user in enumerate(users):
            country = countries[i % len(countries)]
            session.add(Order(user_id=user.id, status=list(OrderStatus)[i % 4], country=country,
                              city=CITIES[country][0], total=Decimal(10 * (i + 1)) + Decimal('0.99')))
    return True


if __name__ == '__main__':
    import os

    url = os.environ.get('JET_SQLA_DATABASE_URL', 'sqlite:///shop.db')
    print('seeded' if seed(sa.create_engine(url)) else 'already seeded', url)
