"""Helpers shared by the background-job tests: counters to increment, and waiting for a job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import migrations

from .conftest import fresh_engine
from .models import Counter

FINISHED = ('succeeded', 'failed', 'cancelled')


def add_counters(engine: sa.Engine, count: int) -> None:
    with engine.begin() as connection:
        for start in range(1, count + 1, 5000):
            connection.execute(sa.insert(Counter), [{'id': i, 'value': 0}
                                                    for i in range(start, min(start + 5000, count + 1))])


def migrated_with_counters(url: str, count: int) -> sa.Engine:
    """An engine on a fresh database at ``url``: jet_sqla's own tables (jobs, audit), and ``count`` counters at 0."""
    engine = fresh_engine(url)
    migrations.upgrade(engine)
    add_counters(engine, count)
    return engine


def counter_values(engine: sa.Engine) -> dict[int, int]:
    with Session(engine) as session:
        # In key order: without ORDER BY, PostgreSQL returns rows updated since in another order.
        return {counter.id: counter.value for counter in session.scalars(sa.select(Counter).order_by(Counter.id))}


def wait_for_job(get_job: Any, job: str, *, until: tuple[str, ...] = FINISHED, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``get_job(job)`` (returning the decoded answer) until its status is one of ``until``."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = get_job(job)
        if state['status'] in until:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f'job {job} still {state["status"]} after {timeout}s: {state}')
        time.sleep(0.05)


def state_of(client: Any) -> Callable[[str], dict[str, Any]]:
    """``get_job`` through a test client (tests.conftest.Client), answered 200: what wait_for_job polls."""
    def get(job: str) -> dict[str, Any]:
        result = client.message('get_job', {'job': job})
        assert result.status_code == 200, result.text
        answer: dict[str, Any] = result.json
        return answer
    return get
