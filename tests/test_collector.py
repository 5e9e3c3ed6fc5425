"""collector.paused_gc: held for a large run until its session has closed, bounded in time, sane across forks."""

from __future__ import annotations

import gc
import os
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge, collector

from .conftest import Client
from .models import User
from .test_loading import add_users

pytestmark = pytest.mark.usefixtures('collector_enabled')


def test_a_large_run_holds_the_pause_through_its_function_and_its_session_close(
        bridge: Bridge, client: Client, engine: sa.Engine) -> None:
    add_users(engine, collector.GC_PAUSE_MIN_IDS)
    seen: dict[str, bool] = {}

    @bridge.action(model=User, for_instance=True, bulk=True)
    def bulk(users: list[User], session: Session) -> None:
        seen['in the function'] = gc.isenabled()
        sa.event.listen(session, 'after_commit', lambda _: seen.setdefault('at the commit', gc.isenabled()))

    large = list(range(1, collector.GC_PAUSE_MIN_IDS + 1))
    assert client.execute('bulk', ids=large).status_code == 200
    assert seen == {'in the function': False, 'at the commit': False}
    assert gc.isenabled()
    seen.clear()
    assert client.execute('bulk', ids=[1, 2]).status_code == 200  # small: not worth a pause
    assert seen == {'in the function': True, 'at the commit': True}


def test_the_collector_is_back_after_a_large_run_that_raised(bridge: Bridge, client: Client,
                                                               engine: sa.Engine) -> None:
    add_users(engine, collector.GC_PAUSE_MIN_IDS)

    @bridge.action(model=User, for_instance=True, bulk=True)
    def fails(users: list[User]) -> None:
        raise RuntimeError('the action failed')

    assert client.execute('fails', ids=list(range(1, collector.GC_PAUSE_MIN_IDS + 1))).status_code == 500
    assert gc.isenabled()


def test_a_pause_that_outlives_its_bound_is_ended_by_the_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector, 'MAX_PAUSE_SECONDS', 0.2)
    with collector.paused_gc():
        assert not gc.isenabled()
        deadline = time.monotonic() + 5
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gc.isenabled(), 'the watchdog did not resume the collector'
        with collector.paused_gc():  # nested in an ended pause: counted, and it changes nothing
            assert gc.isenabled()
    assert gc.isenabled()
    with collector.paused_gc():  # the next pause is a pause again
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_child_forked_during_a_pause_starts_with_the_collector_on() -> None:
    with collector.paused_gc():
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave at once
            os.close(read)
            with collector.paused_gc():
                inside = gc.isenabled()
            os.write(write, f'{int(gc.isenabled())}{int(inside)}'.encode())
            os._exit(0)
        os.close(write)
        answer = os.read(read, 2).decode()
        os.waitpid(pid, 0)
        os.close(read)
        assert not gc.isenabled()  # the parent's pause goes on
    assert answer == '10'  # the child: on, and its own pause still pauses
