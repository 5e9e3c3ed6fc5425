"""Background actions of a Flask-SQLAlchemy app: each chunk runs inside the app context, on db.session."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import flask
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from jet_sqla import Bridge, migrations

from .conftest import AUTH, TOKEN


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Ticket(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = 'tickets'
    id: Mapped[int] = mapped_column(primary_key=True)
    seen: Mapped[int] = mapped_column(default=0)


bridge = Bridge(db.Model, token=TOKEN)


@bridge.action(model=Ticket, for_instance=True, bulk=True, background=True, chunk_size=2)
def see(tickets: list[Ticket], session: Session) -> None:
    assert session is db.session() and flask.current_app.name == 'tickets'  # the app's own session and context
    for ticket in tickets:
        ticket.seen += 1


def test_a_background_chunk_runs_in_the_flask_app_context_on_db_session(tmp_path: Path) -> None:
    app = flask.Flask('tickets')
    app.config['SQLALCHEMY_DATABASE_URI'] = f'sqlite:///{tmp_path / "tickets.db"}'
    db.init_app(app)
    with app.app_context():
        db.create_all()
        migrations.upgrade(db.engine)
        db.session.add_all(Ticket(id=i) for i in range(1, 6))
        db.session.commit()
    bridge.init_app(app)
    client = app.test_client()

    def send(name: str, params: dict[str, Any]) -> Any:
        response = client.post('/api/messages/', json={'name': name, 'params': params}, headers=AUTH)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    job = send('execute_action', {'name': 'see', 'ids': [1, 2, 3, 4, 5]})['job']
    deadline = time.monotonic() + 30
    while (state := send('get_job', {'job': job}))['status'] in ('queued', 'running'):
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert (state['status'], state['done'], state['errors']) == ('succeeded', 5, [])
    with app.app_context():
        assert set(db.session.scalars(sa.select(Ticket.seen))) == {1}
        db.engine.dispose()
