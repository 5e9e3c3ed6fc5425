"""Change history under a crash: a worker killed just before its COMMIT leaves no history of work not saved.

The run has written its rows and its log row, with its changes, inside its
transaction; the kill comes before the COMMIT is sent. Afterwards neither the
rows nor the log row exist, and the runs before and after it have both.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from jet_sqla import migrations
from jet_sqla.audit import action_log

from .apps.faults import create_tables, gauge, pairs_by_ref
from .apps.server import gunicorn
from .conftest import TOKEN, database_url
from .models import drop_everything
from .test_faults import new_ref, raw_request, report, wait_for

pytestmark = pytest.mark.e2e

WORKERS = 2


def history(engine: sa.Engine) -> list[tuple[str, str, list[dict[str, object]]]]:
    """Every logged run: (action, outcome, the refs its changes wrote)."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(action_log.c.action, action_log.c.outcome, action_log.c.changes)
                                  .order_by(action_log.c.id)).all()
    return [(row.action, row.outcome, json.loads(row.changes)['changes'] if row.changes else []) for row in rows]


def test_worker_killed_before_commit_leaves_no_history_of_unsaved_work(
        dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = database_url(dialect, tmp_path)
    engine = sa.create_engine(url)
    drop_everything(engine)
    create_tables(engine)
    migrations.upgrade(engine)
    markers = tmp_path / 'markers'
    markers.mkdir()
    try:
        with gunicorn('tests.apps.history_faults:create_app()', database_url=url, token=TOKEN, workers=WORKERS,
                      log_path=tmp_path / 'gunicorn.log', env={'JET_SQLA_FAULTS_DIR': str(markers)}) as server:
            client = server.client()
            before = client.execute('pair', ref='before')
            assert before.status == 200, before
            ref = new_ref()
            sock = raw_request(server, 'pair_held_at_commit', ref=ref)
            victim = int(wait_for(markers / f'{ref}.pid'))  # its log row is written; its COMMIT is not sent
            os.kill(victim, signal.SIGKILL)
            assert sock.recv(1024) == b''
            sock.close()
            server.wait_for_workers(WORKERS, excluding={victim})
            client.close()
            after = client.execute('pair', ref='after')
            assert after.status == 200, after
            client.close()
        assert set(pairs_by_ref(engine)) == {'before', 'after'} and gauge(engine) == 2
        logged = history(engine)
        assert [(action, outcome) for action, outcome, _ in logged] == [('pair', 'success'), ('pair', 'success')]
        refs = [{change['fields']['ref'] for change in changes if change['op'] == 'insert'}  # type: ignore[index]
                for _, _, changes in logged]
        assert refs == [{'before'}, {'after'}]  # the killed run's changes are nowhere
        assert before.body['run'] < after.body['run']
        report(capsys, f'history under a crash {dialect}: killed pid {victim} at COMMIT; history rows '
                       f'{len(logged)} (before, after), none for the killed run')
    finally:
        engine.dispose()
