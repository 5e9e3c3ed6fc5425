"""Background chunks under database faults: real deadlocks between two chunks, on PostgreSQL and MariaDB.

Two chunks of one job run at once on the embedded runner's two threads, each
locking its own counter and then the other's, so the database kills one of
them, as test_concurrency.py provokes it for requests. A deadlock while the
function runs is retried in place; one after the function returned is not
run again, as a request is not: the chunk is rolled back and counted failed.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge

from .conftest import TOKEN, Client, database_url
from .jobs_helpers import counter_values, migrated_with_counters, state_of, wait_for_job
from .models import Base, Counter

SERVER_DIALECTS = ['postgresql', 'mariadb']


@pytest.fixture(params=SERVER_DIALECTS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = migrated_with_counters(database_url(str(request.param), tmp_path), 2)
    yield engine
    engine.dispose()


def _lock(session: Session, counter_id: int) -> None:
    session.execute(sa.select(Counter.id).where(Counter.id == counter_id).with_for_update()).one()


def test_a_deadlock_inside_a_chunk_is_retried_and_its_effects_happen_once(
        engine: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    bridge = Bridge(Base, engine=engine, token=TOKEN, job_threads=2)
    calls: collections.Counter[int] = collections.Counter()
    both_hold_one = threading.Barrier(2, timeout=10)

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=1)
    def cross(counters: list[Counter], session: Session) -> None:
        mine = counters[0].id
        calls[mine] += 1
        # The increment is written (and its row locked) before the deadlock: the victim's is rolled back.
        session.execute(sa.update(Counter).where(Counter.id == mine).values(value=Counter.value + 1))
        if calls[mine] == 1:
            both_hold_one.wait()
        _lock(session, 3 - mine)  # the other chunk's row, in the opposite order: a deadlock

    client = Client(bridge)
    with caplog.at_level(logging.WARNING, logger='jet_sqla'):
        accepted = client.execute('cross', 'counters', ids=[1, 2])
        assert accepted.status_code == 200, accepted.text
        assert accepted.json['chunks'] == 2
        state = wait_for_job(state_of(client), accepted.json['job'], timeout=30)
    assert state['status'] == 'succeeded', state
    assert (state['done'], state['failed'], state['errors']) == (2, 0, [])
    # One chunk was the victim and ran again; each counter was incremented exactly once.
    assert sorted(calls.values()) == [1, 2], calls
    assert counter_values(engine) == {1: 1, 2: 1}
    retried = [record for record in caplog.records
               if record.levelno == logging.WARNING and "retrying a chunk of 'cross'" in record.getMessage()]
    assert len(retried) == 1, [record.getMessage() for record in caplog.records]


def test_a_deadlock_after_the_function_returned_fails_the_chunk_and_does_not_run_it_again(
        engine: sa.Engine) -> None:
    """As for a request: the function had returned, so it is not called again; the operator sees why."""
    bridge = Bridge(Base, engine=engine, token=TOKEN, job_threads=2)
    calls: collections.Counter[int] = collections.Counter()
    both_hold_one = threading.Barrier(2, timeout=10)

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=1)
    def cross_late(counters: list[Counter], session: Session) -> None:
        mine = counters[0].id
        calls[mine] += 1
        _lock(session, mine)
        if sum(calls.values()) <= 2:
            both_hold_one.wait()
        # Changed in memory only: the UPDATE, and so the deadlock, comes in the flush after return.
        session.get_one(Counter, 3 - mine).value += 1

    client = Client(bridge)
    accepted = client.execute('cross_late', 'counters', ids=[1, 2])
    assert accepted.status_code == 200, accepted.text
    job = accepted.json['job']
    state = wait_for_job(state_of(client), job, timeout=30)
    assert sum(calls.values()) == 2, f'a chunk whose function had returned was run again: {calls}'
    assert state['status'] == 'failed', state
    assert (state['done'], state['failed']) == (1, 1), state
    [error] = state['errors']
    assert 'could not take its locks' in error['message'] and 'try again' in error['message']
    # Exactly the winner's change is there: the victim left nothing. The winner incremented the
    # victim's counter (each chunk writes the other's row), and the victim's write is gone.
    victim = error['first_id']
    assert counter_values(engine) == {victim: 1, 3 - victim: 0}
