"""The console's Preview button, History view and Undo, in a real headless Chromium.

An audited app (``tests/apps/console_history_app.py``) under gunicorn on
loopback, over SQLite. Each test leaves a screenshot in ``test-artifacts/console/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import migrations

from . import models
from .apps.console_app import TOKEN, Server
from .apps.server import gunicorn
from .models import Account, User
from .test_console import ARTIFACTS, Console, browser  # noqa: F401 - the browser fixture

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def balances(engine: sa.Engine) -> dict[int, Decimal]:
    with engine.connect() as connection:
        return dict(connection.execute(sa.select(Account.id, Account.balance)).all())  # type: ignore[arg-type]


@pytest.fixture
def audited(tmp_path: Path) -> Iterator[tuple[Server, sa.Engine]]:
    url = f'sqlite:///{tmp_path / "history.db"}'
    engine = sa.create_engine(url)
    models.reset(engine)
    migrations.upgrade(engine)
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
        session.flush()
        session.add_all([Account(id=1, owner_id=1, balance=Decimal('100.00')),
                         Account(id=2, owner_id=1, balance=Decimal('10.00'))])
    try:
        with gunicorn('tests.apps.console_history_app:create_app()', database_url=url, token=TOKEN,
                      log_path=tmp_path / 'gunicorn.log', workers=1, threads=4) as server:
            yield Server(f'http://{server.host}:{server.port}', url), engine
    finally:
        engine.dispose()


@pytest.fixture
def console(browser: Browser, audited: tuple[Server, sa.Engine],  # noqa: F811 - the imported fixture
            request: pytest.FixtureRequest) -> Iterator[Console]:
    context = browser.new_context(viewport={'width': 1280, 'height': 900})
    context.set_default_timeout(5_000)
    page = context.new_page()
    tab = Console(page, audited[0])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield tab
    finally:
        try:
            page.screenshot(path=str(ARTIFACTS / f'{request.node.name}.png'), full_page=True)
        finally:
            context.close()
    assert tab.errors == []


def cells(console: Console, testid: str) -> list[list[str]]:
    table = console.page.get_by_test_id(testid)
    table.wait_for()
    return [row.locator('td').all_inner_texts() for row in table.locator('tbody tr').all()]


def test_preview_shows_the_changes_and_saves_nothing_then_run_saves(
        console: Console, audited: tuple[Server, sa.Engine]) -> None:
    engine = audited[1]
    page = console.page
    console.login()
    console.action('action-add_interest')
    page.get_by_test_id('field-rate').fill('0.10')
    page.get_by_test_id('preview-action').click()
    assert cells(console, 'changes-table') == [
        ['accounts', '1 update', 'balance', '100.00 → 110.00'],
        ['accounts', '2 update', 'balance', '10.00 → 11.00'],
    ]
    assert page.get_by_test_id('changes-counts').inner_text() == 'accounts: 2 update'
    assert console.sent('execute_action')[-1]['dry_run'] is True
    assert balances(engine) == {1: Decimal('100.00'), 2: Decimal('10.00')}
    response = console.run()
    assert response.status == 200 and 'run' in response.json()
    assert balances(engine) == {1: Decimal('110.00'), 2: Decimal('11.00')}


def test_an_action_declared_without_preview_has_no_preview_button(console: Console) -> None:
    console.login()
    console.action('action-mail_statements')
    console.page.get_by_test_id('run-action').wait_for()
    assert console.page.get_by_test_id('preview-action').count() == 0


def test_history_opens_a_run_and_undoes_it(console: Console, audited: tuple[Server, sa.Engine]) -> None:
    engine = audited[1]
    page = console.page
    console.login()
    console.action('action-add_interest')
    page.get_by_test_id('field-rate').fill('0.5')
    run = console.run().json()['run']
    page.get_by_test_id('history-button').click()
    assert cells(console, 'runs-table')[0][:1] == [str(run)]
    page.get_by_test_id(f'open-run-{run}').click()
    assert cells(console, 'changes-table') == [
        ['accounts', '1 update', 'balance', '100.00 → 150.00'],
        ['accounts', '2 update', 'balance', '10.00 → 15.00'],
    ]
    page.get_by_test_id('undo-run').click()
    page.get_by_test_id('undo-done').wait_for()
    assert balances(engine) == {1: Decimal('100.00'), 2: Decimal('10.00')}
    undo_run = console.sent('undo_run')
    assert undo_run == [{'run': run}]
    # The history now lists the undo, and the run says who undid it.
    first = cells(console, 'runs-table')[0]
    assert first[2] == f'undo_run of run {run}'
    page.get_by_test_id(f'open-run-{run}').click()
    page.get_by_test_id('undone-by').wait_for()
    assert page.get_by_test_id('undo-run').count() == 0


def test_undo_shows_the_conflicts_and_changes_nothing(console: Console, audited: tuple[Server, sa.Engine]) -> None:
    engine = audited[1]
    page = console.page
    console.login()
    console.action('action-add_interest')
    page.get_by_test_id('field-rate').fill('0.5')
    run = console.run().json()['run']
    with Session(engine) as session, session.begin():
        session.get_one(Account, 2).balance = Decimal('99.99')  # someone else's change, since
    page.get_by_test_id('history-button').click()
    page.get_by_test_id(f'open-run-{run}').click()
    page.get_by_test_id('undo-run').click()
    assert cells(console, 'undo-conflicts') == [['accounts', '2', 'balance', '15.00', '99.99']]
    assert 'rows changed since' in page.get_by_test_id('result').locator('h2').inner_text()
    assert balances(engine) == {1: Decimal('150.00'), 2: Decimal('99.99')}
