"""Undo of one chunk of an audited background job, on SQLite and PostgreSQL, in the embedded mode.

Each chunk is a run of its own, logged with its changes: ``undo_run`` of one
chunk's run restores exactly that chunk's rows, leaves the other chunks' rows
alone, and refuses with a 409, writing nothing, when one of its rows changed since.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jet_sqla import ActionContext, Bridge
from jet_sqla.audit import action_log

from .conftest import TOKEN, Client, database_url
from .jobs_helpers import counter_values, migrated_with_counters, wait_for_job
from .models import Base, Counter

#: Undo's own timeouts are those of a request; a hang is a failure, not a wait.
UNDO_SECONDS = 10


@pytest.fixture(params=['sqlite', 'postgresql'])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = migrated_with_counters(database_url(str(request.param), tmp_path), 30)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: sa.Engine) -> Client:
    bridge = Bridge(Base, engine=engine, token=TOKEN, audit=True)

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
    def add(counters: list[Counter], step: int, ctx: ActionContext) -> None:
        for counter in counters:
            counter.value += step

    return Client(bridge)


def _chunk_runs(engine: sa.Engine) -> dict[int, int]:
    """Each successful chunk run of ``add``: the first id it changed -> its log id."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(action_log.c.id, action_log.c.changes).where(
            action_log.c.action == 'add', action_log.c.outcome == 'success')).all()
    return {min(change['id'] for change in json.loads(row.changes)['changes']): row.id for row in rows}


def _run_job(client: Client, **form: Any) -> None:
    accepted = client.execute('add', 'counters', **form)
    assert accepted.status_code == 200, accepted.text
    state = wait_for_job(lambda job: client.message('get_job', {'job': job}).json, accepted.json['job'],
                         timeout=UNDO_SECONDS)
    assert state['status'] == 'succeeded', state


def _undo(client: Client, run: int) -> Any:
    """Through the same app whose embedded runner ran the job, its threads still alive."""
    return client.message('undo_run', {'run': run})


def test_undo_of_one_chunk_restores_exactly_its_rows(engine: sa.Engine, client: Client) -> None:
    _run_job(client, ids=list(range(1, 31)), step=1)
    runs = _chunk_runs(engine)
    assert sorted(runs) == [1, 11, 21]  # one run per chunk, each holding its own rows' changes
    # A second job moves rows of the first chunk on, so that they differ from what the undone chunk saw.
    _run_job(client, ids=list(range(1, 11)), step=5)
    undone = _undo(client, runs[11])
    assert undone.status_code == 200, undone.text
    assert undone.json['undone'] == runs[11]
    values = counter_values(engine)
    assert {values[i] for i in range(11, 21)} == {0}  # the chunk's rows, as before it ran
    assert {values[i] for i in range(1, 11)} == {6}  # the first chunk and the second job, untouched
    assert {values[i] for i in range(21, 31)} == {1}  # the third chunk, untouched
    with engine.connect() as connection:
        undo_row = connection.execute(sa.select(action_log).where(action_log.c.id == undone.json['run'])).one()
    assert (undo_row.action, undo_row.outcome, undo_row.undo_of) == ('undo_run', 'success', runs[11])
    assert sorted(change['id'] for change in json.loads(undo_row.changes)['changes']) == list(range(11, 21))


def test_undo_of_a_chunk_whose_row_changed_is_a_409_and_writes_nothing(engine: sa.Engine, client: Client) -> None:
    _run_job(client, ids=list(range(1, 31)), step=1)
    runs = _chunk_runs(engine)
    with engine.begin() as connection:
        connection.execute(sa.update(Counter).where(Counter.id == 25).values(value=40))
    before = counter_values(engine)
    refused = _undo(client, runs[21])
    assert refused.status_code == 409, refused.text
    assert refused.json['code'] == 'undo_conflict'
    assert refused.json['conflicts'] == [{'collection': 'counters', 'id': 25, 'column': 'value',
                                          'expected': 1, 'actual': 40}]
    assert counter_values(engine) == before  # not even the nine rows without a conflict
    with engine.connect() as connection:
        undone = connection.scalar(sa.select(sa.func.count()).select_from(action_log).where(
            action_log.c.undo_of == runs[21], action_log.c.outcome == 'success'))
    assert undone == 0
    # The other chunks can still be undone, each on its own.
    assert _undo(client, runs[1]).status_code == 200
    after = counter_values(engine)
    assert {after[i] for i in range(1, 11)} == {0} and after[25] == 40 and after[11] == 1


def test_undo_of_a_finished_chunk_while_a_later_chunk_holds_its_transaction(engine: sa.Engine) -> None:
    """The runner's connection holds a chunk's writes uncommitted (on SQLite, the file's write lock):
    the undo of an earlier chunk waits for it, then restores its own rows only; nothing hangs."""
    import threading
    import time

    bridge = Bridge(Base, engine=engine, token=TOKEN, audit=True, job_threads=1)
    inside, release = threading.Event(), threading.Event()

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=10)
    def add(counters: list[Counter], ctx: ActionContext) -> None:
        for counter in counters:
            counter.value += 1
        ctx.session.flush()  # written and locked, not committed
        if counters[0].id == 21:
            inside.set()
            assert release.wait(UNDO_SECONDS)

    client = Client(bridge)
    accepted = client.execute('add', 'counters', ids=list(range(1, 31)))
    assert accepted.status_code == 200, accepted.text
    assert inside.wait(UNDO_SECONDS), 'the last chunk never started'
    runs = _chunk_runs(engine)
    assert sorted(runs) == [1, 11]  # the last chunk's run is not committed yet
    answers: list[Any] = []
    started = time.monotonic()
    undo = threading.Thread(target=lambda: answers.append(client.message('undo_run', {'run': runs[1]})))
    undo.start()
    undo.join(0.5)
    release.set()
    undo.join(UNDO_SECONDS)
    assert not undo.is_alive(), 'the undo hung behind the running chunk'
    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert time.monotonic() - started < UNDO_SECONDS
    state = wait_for_job(lambda job: client.message('get_job', {'job': job}).json, accepted.json['job'],
                         timeout=UNDO_SECONDS)
    assert state['status'] == 'succeeded' and state['done'] == 30, state
    values = counter_values(engine)
    assert {values[i] for i in range(1, 11)} == {0}
    assert {values[i] for i in range(11, 31)} == {1}
