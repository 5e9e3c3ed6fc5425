"""The console page: served only when asked, and driven end to end in a real headless Chromium.

The browser tests run the example shop (plus one action, see
``tests/apps/console_app.py``) under gunicorn on loopback, over SQLite, click
through the page as an operator would, and read the database to see what
changed. Each test leaves a screenshot in ``test-artifacts/console/``.

Locally they skip when Chromium or Playwright is missing; under ``CI=true``
they fail instead.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import sqlalchemy as sa
from falcon import testing
from sqlalchemy.orm import Session

from jet_sqla import Bridge
from jet_sqla.examples.shop.models import Account, Order, OrderStatus, Transfer, User

from . import models
from .apps.console_app import CHROMIUM, REPO, TOKEN, Server, serve
from .conftest import IN_CI

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response

ARTIFACTS = REPO / 'test-artifacts' / 'console'
CONSOLE_FILES = ('index.html', 'console.js', 'console.css')
TOKEN_KEY = 'jet_sqla.console.token'


# ---------- the page as files, through the real Falcon app ----------

def _http(console: bool) -> testing.TestClient:
    bridge = Bridge(models.Base, engine=sa.create_engine('sqlite://'), token='t', console=console)
    return testing.TestClient(bridge.wsgi_app())


@pytest.mark.parametrize('path', ['/api/console/', '/api/console', '/api/console/console.js'])
def test_console_is_not_served_unless_enabled(path: str) -> None:
    result = _http(console=False).simulate_get(path)
    assert result.status_code == 404
    assert result.json == {'detail': f'Not Found: GET {path}', 'error': f'Not Found: GET {path}', 'error_code': 'not_found'}


def test_console_serves_its_page_from_the_package_and_fetches_nothing_else() -> None:
    http = _http(console=True)
    types = {'index.html': 'text/html', 'console.js': 'javascript', 'console.css': 'text/css'}
    for name in CONSOLE_FILES:
        result = http.simulate_get(f'/api/console/{name}')
        assert result.status_code == 200, name
        assert types[name] in result.headers['content-type']
        # No CDN, no web font, no remote image: only files of its own directory.
        assert not re.search(r'(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}', result.text, re.IGNORECASE), name
    index = http.simulate_get('/api/console/')
    assert index.status_code == 200
    assert 'data-testid="login-form"' in index.text
    assert "connect-src 'self'" in index.text


def test_console_path_without_slash_redirects_to_the_page() -> None:
    # Served at /api/console, the page's relative links would point at /api/console.css.
    result = _http(console=True).simulate_get('/api/console')
    assert result.status_code == 301
    assert result.headers['location'] == 'console/'


# ---------- in a real browser ----------

def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f'CI=true needs the console browser tests to run: {reason}', pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope='module')
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable('Playwright for Python is not installed: pip install playwright')
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f'no Chromium at {CHROMIUM}: make browser (apt-get install chromium), '
                     'or set JET_SQLA_TEST_CHROMIUM')
    with sync_playwright() as playwright:
        # Playwright already adds --headless, --no-sandbox and the switches that keep Chromium off the network.
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture(scope='module')
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp('console')
    with serve(f'sqlite:///{directory / "shop.db"}', log_path=directory / 'gunicorn.log') as server:
        yield server


@pytest.fixture(scope='module')
def shop_db(shop: Server) -> Iterator[sa.Engine]:
    engine = sa.create_engine(shop.database_url)
    yield engine
    engine.dispose()


class Console:
    """One browser tab on the console, with the messages it sent."""

    def __init__(self, page: Page, server: Server) -> None:
        self.page = page
        self.server = server
        self.requests: list[Request] = []
        self.errors: list[str] = []
        page.on('request', lambda request: self.requests.append(request))
        page.on('pageerror', lambda error: self.errors.append(str(error)))
        page.on('console', self._console_message)

    def _console_message(self, message: ConsoleMessage) -> None:
        # A refused request logs "Failed to load resource"; the page shows those itself.
        if message.type == 'error' and not message.text.startswith('Failed to load resource'):
            self.errors.append(message.text)

    def open(self) -> None:
        self.page.goto(f'{self.server.url}/api/console/')

    def login(self, token: str = TOKEN) -> None:
        self.open()
        self.page.get_by_test_id('token-input').fill(token)
        self.page.get_by_test_id('token-input').press('Enter')

    def action(self, testid: str) -> None:
        self.page.get_by_test_id(testid).click()

    def run(self) -> Response:
        """Click Run and return the execute_action response."""
        with self.page.expect_response(lambda response: _message_name(response.request) == 'execute_action') as info:
            self.page.get_by_test_id('run-action').click()
        self.page.locator('[data-testid=result].result-ok, [data-testid=result].result-error').wait_for()
        return info.value

    def pick(self, field: str, search: str, label: str) -> None:
        """Type in a ForeignKey search and choose the option labelled ``label``."""
        self.page.get_by_test_id(f'field-{field}').fill(search)
        self.page.locator(f'[data-testid=field-{field}] ~ .combo-pop li[role=option]', has_text=label).click()

    def sent(self, name: str) -> list[dict[str, Any]]:
        """The params of every ``name`` message the page sent."""
        return [request.post_data_json['params'] for request in self.requests if _message_name(request) == name]

    def result_json(self) -> Any:
        return json.loads(self.page.get_by_test_id('result').locator('pre').inner_text())


def _message_name(request: Request) -> str | None:
    if request.method != 'POST' or not request.url.endswith('/api/messages/'):
        return None
    return str(request.post_data_json.get('name'))


@pytest.fixture
def console(browser: Browser, shop: Server, request: pytest.FixtureRequest) -> Iterator[Console]:
    context = browser.new_context(viewport={'width': 1280, 'height': 900})
    context.set_default_timeout(5_000)
    page = context.new_page()
    tab = Console(page, shop)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield tab
    finally:
        try:
            page.screenshot(path=str(ARTIFACTS / f'{request.node.name}.png'), full_page=True)
        finally:
            context.close()
    assert tab.errors == []


def _read(engine: sa.Engine, query: Callable[[Session], Any]) -> Any:
    with Session(engine) as session:
        return query(session)


def _pairs(session: Session, key: Any, value: Any) -> dict[Any, Any]:
    return {row[0]: row[1] for row in session.execute(sa.select(key, value))}


def test_login_keeps_the_token_in_session_storage_and_out_of_urls(console: Console) -> None:
    page = console.page
    page.goto(f'{console.server.url}/api/console')  # no slash: redirected
    assert page.url == f'{console.server.url}/api/console/'
    console.login('not-the-token')
    error = page.locator('#login-error')
    error.filter(has_text=re.compile(r'\w')).wait_for()
    assert page.get_by_test_id('login-form').is_visible()
    assert page.evaluate(f'sessionStorage.getItem("{TOKEN_KEY}")') is None

    console.login()
    page.get_by_test_id('action-mail_users').wait_for()
    assert page.evaluate(f'sessionStorage.getItem("{TOKEN_KEY}")') == TOKEN
    assert page.evaluate(f'localStorage.getItem("{TOKEN_KEY}")') is None
    page.get_by_test_id('action-mail_users').click()
    page.get_by_test_id('records-table').wait_for()
    page.reload()  # the same tab stays signed in
    page.get_by_test_id('records-table').wait_for()
    assert not page.get_by_test_id('login-form').is_visible()

    assert TOKEN not in page.url
    assert all(TOKEN not in request.url for request in console.requests)
    sent = [request for request in console.requests if _message_name(request)]
    assert {_message_name(request) for request in sent} >= {'get_action_list', 'list_records'}
    assert {request.headers['authorization'] for request in sent} == {'Bearer not-the-token', f'Bearer {TOKEN}'}

    page.get_by_role('button', name='Sign out').click()
    page.get_by_test_id('login-form').wait_for()
    assert page.evaluate(f'sessionStorage.getItem("{TOKEN_KEY}")') is None


def test_foreign_key_search_fills_the_form_and_the_transfer_commits(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    console.login()
    console.action('action-account_transfer')
    page.get_by_test_id('field-account_from').fill('Ada')
    options = page.locator('[data-testid=field-account_from] ~ .combo-pop li[role=option]')
    options.first.wait_for()
    # The server searched: only Ada's account matches, and the search term travelled as `q`.
    assert options.locator('.opt-name').all_inner_texts() == ["Ada's account"]
    assert options.first.get_attribute('data-value') == '1'
    assert any(params.get('q') == 'Ada' and params['field'] == 'account_from'
               for params in console.sent('get_field_options'))
    options.first.click()
    assert page.get_by_test_id('field-account_from').input_value() == "Ada's account"
    console.pick('account_to', 'alan', "Alan's account")
    page.get_by_test_id('field-amount_from').fill('12.50')
    page.get_by_test_id('field-amount_to').fill('12.50')
    page.get_by_test_id('field-description').fill('rent')

    response = console.run()

    assert response.status == 200
    assert console.result_json() == {'result': True, 'from_balance': '87.50', 'to_balance': '112.50'}
    assert console.sent('execute_action')[-1]['params'] == {
        'account_from': 1, 'account_to': 2, 'amount_from': '12.50', 'amount_to': '12.50', 'description': 'rent'}
    balances = _read(shop_db, lambda s: _pairs(s, Account.id, Account.balance))
    assert balances[1] == Decimal('87.50')
    assert balances[2] == Decimal('112.50')
    transfers = _read(shop_db, lambda s: s.execute(sa.select(Transfer.account_from_id, Transfer.account_to_id,
                                                            Transfer.amount, Transfer.note)).all())
    assert [tuple(row) for row in transfers] == [(1, 2, Decimal('12.50'), 'rent')]


def test_bulk_action_runs_once_on_the_selected_rows(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    before = _read(shop_db, lambda s: _pairs(s, Order.id, Order.status))
    console.login()
    console.action('action-cancel_orders')
    page.get_by_test_id('select-1').check()
    page.get_by_test_id('select-5').check()
    page.get_by_test_id('field-reason').fill('duplicate')

    response = console.run()

    assert response.status == 200
    assert console.result_json() == {'result': True, 'cancelled': 2}
    executed = console.sent('execute_action')
    assert len(executed) == 1  # bulk: one request for every selected row
    assert executed[0]['params'] == {'ids': [1, 5], 'reason': 'duplicate'}
    after = _read(shop_db, lambda s: _pairs(s, Order.id, Order.status))
    assert before[1] is before[5] is OrderStatus.NEW
    assert after == {**before, 1: OrderStatus.CANCELLED, 5: OrderStatus.CANCELLED}
    # The table reloads and shows the new state.
    row = page.get_by_test_id('records-table').locator('tr', has=page.get_by_test_id('select-5'))
    row.filter(has_text='cancelled').wait_for()


def test_select_all_sends_every_row_of_the_page(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    console.login()
    console.action('action-mail_users')
    page.get_by_test_id('select-8').wait_for()
    page.get_by_test_id('select-all').check()
    page.get_by_test_id('field-subject').fill('Hello')

    response = console.run()

    assert response.status == 200
    assert console.result_json() == {'result': True, 'sent': 8}
    assert console.sent('execute_action')[0]['params']['ids'] == list(range(1, 9))
    mailed = _read(shop_db, lambda s: s.scalars(sa.select(User.last_mailed_at)).all())
    assert len(mailed) == 8 and None not in mailed


def test_a_background_action_shows_its_progress_until_it_succeeds(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    before = _read(shop_db, lambda s: _pairs(s, Order.id, Order.total))
    console.login()
    console.action('action-apply_discount')
    for record in (2, 3, 4):
        page.get_by_test_id(f'select-{record}').check()
    page.get_by_test_id('field-percent').fill('50')

    response = console.run()  # returns once the job has finished: the result turns green or red

    assert response.status == 200 and response.json()['total'] == 3 and response.json()['chunks'] == 2
    assert page.get_by_test_id('job-status').inner_text() == 'succeeded'
    assert page.get_by_test_id('job-counts').inner_text() == '3 of 3 done · 0 failed'
    progress = page.get_by_test_id('job-progress')
    assert (progress.get_attribute('value'), progress.get_attribute('max')) == ('3', '3')
    assert page.get_by_test_id('job-cancel').is_disabled()
    assert console.sent('get_job') and all(params == {'job': response.json()['job']} for params in console.sent('get_job'))
    after = _read(shop_db, lambda s: _pairs(s, Order.id, Order.total))
    assert after == {**before, **{key: (before[key] / 2).quantize(Decimal('0.01')) for key in (2, 3, 4)}}


def test_a_background_job_lists_its_failed_chunks(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    before = _read(shop_db, lambda s: _pairs(s, Order.id, Order.total))
    console.login()
    console.action('action-apply_discount')
    for record in (5, 6, 7):
        page.get_by_test_id(f'select-{record}').check()
    page.get_by_test_id('field-percent').fill('0')  # refused by the action, in every chunk

    console.run()

    assert page.get_by_test_id('job-status').inner_text() == 'failed'
    assert page.get_by_test_id('job-counts').inner_text() == '0 of 3 done · 3 failed'
    failures = page.get_by_test_id('job-errors').locator('li')
    assert failures.all_inner_texts() == ['5–6: The discount is a percentage between 1 and 99',
                                          '7: The discount is a percentage between 1 and 99']
    assert _read(shop_db, lambda s: _pairs(s, Order.id, Order.total)) == before


def test_cancel_stops_a_background_job(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    console.login()
    console.action('action-slow_touch')
    page.get_by_test_id('select-8').wait_for()
    page.get_by_test_id('select-all').check()
    page.get_by_test_id('run-action').click()
    page.get_by_test_id('job-status').wait_for()
    page.get_by_test_id('job-cancel').click()

    page.locator('[data-testid=job-status]', has_text='cancelled').wait_for()
    assert console.sent('cancel_job') == [{'job': page.get_by_test_id('job-id').inner_text()}]
    assert page.get_by_test_id('job-cancel').is_disabled()
    page.locator('[data-testid=result].result-error h2', has_text='Job cancelled').wait_for()


def test_each_field_type_gets_its_input_and_sends_its_value(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    console.login()
    console.action('action-ship_orders')
    field = page.get_by_test_id
    assert field('field-carrier').evaluate('el => el.tagName') == 'SELECT'
    assert [field(f'field-{name}').get_attribute('type') for name in ('ship_on', 'packages', 'express')] == [
        'date', 'number', 'checkbox']
    assert field('field-note').evaluate('el => el.tagName') == 'TEXTAREA'
    colors = field('field-carrier').locator('option .swatch').evaluate_all(
        'els => els.map(el => el.style.getPropertyValue("--swatch"))')
    assert len(colors) == 3 and all(colors)
    field('select-2').check()
    field('select-6').check()
    field('field-carrier').select_option(label='Courier')
    field('field-ship_on').fill('2026-12-01')
    field('field-packages').fill('3')
    field('field-express').check()
    field('field-note').fill('Fragile')

    response = console.run()

    assert response.status == 200
    assert console.result_json() == {'result': True, 'shipped': [2, 6], 'carrier': 'COURIER',
                                     'ship_on': '2026-12-01', 'packages': 3, 'express': True, 'note': 'Fragile'}
    statuses = _read(shop_db, lambda s: _pairs(s, Order.id, Order.status))
    assert statuses[2] is statuses[6] is OrderStatus.SHIPPED


def test_validation_errors_show_next_to_their_fields(console: Console, shop_db: sa.Engine) -> None:
    page = console.page
    before = _read(shop_db, lambda s: (_pairs(s, Account.id, Account.balance),
                                       s.scalar(sa.select(sa.func.count()).select_from(Transfer))))
    console.login()
    console.action('action-account_transfer')

    # Required fields are checked in the page: nothing is sent.
    page.get_by_test_id('run-action').click()
    assert page.get_by_test_id('error-account_from').inner_text() == 'This field is required.'
    assert page.get_by_test_id('error-amount_to').inner_text() == 'This field is required.'
    assert page.get_by_test_id('error-description').inner_text() == ''  # optional
    assert console.sent('execute_action') == []

    # A value only the server rejects: its reason lands under that field.
    console.pick('account_from', 'Grace', "Grace's account")
    console.pick('account_to', 'Edsger', "Edsger's account")
    page.get_by_test_id('field-amount_from').fill('12,5O')
    page.get_by_test_id('field-amount_to').fill('1')
    response = console.run()
    assert response.status == 400
    # The page asks for problem details, and reads them.
    assert 'application/problem+json' in response.request.headers['accept']
    assert response.headers['content-type'] == 'application/problem+json'
    body = response.json()
    assert (body['status'], body['code']) == (400, 'invalid_params') and set(body['fields']) == {'amount_from'}
    amount_from = page.get_by_test_id('field-amount_from')
    error = page.locator('.field', has=amount_from).get_by_test_id('error-amount_from')
    assert error.inner_text() == body['fields']['amount_from']
    page.screenshot(path=str(ARTIFACTS / 'validation-error-next-to-field.png'))
    assert amount_from.get_attribute('aria-invalid') == 'true'
    assert error.get_attribute('id') in amount_from.get_attribute('aria-describedby').split()
    assert page.get_by_test_id('error-amount_to').inner_text() == ''
    assert 'HTTP 400' in page.get_by_test_id('result').inner_text()
    amount_from.fill('5')  # editing the field clears its error
    assert error.inner_text() == ''

    # A refusal raised by the action itself shows in the result.
    console.pick('account_to', 'Grace', "Grace's account")
    response = console.run()
    assert response.status == 400
    assert 'Pick two different accounts' in page.get_by_test_id('result').inner_text()

    after = _read(shop_db, lambda s: (_pairs(s, Account.id, Account.balance),
                                      s.scalar(sa.select(sa.func.count()).select_from(Transfer))))
    assert after == before


def test_keyboard_alone_signs_in_chooses_and_runs_with_visible_focus(console: Console) -> None:
    page = console.page
    console.open()
    assert page.evaluate('document.activeElement.dataset.testid') == 'token-input'
    page.keyboard.type(TOKEN)
    page.keyboard.press('Enter')
    page.get_by_test_id('action-rebuild_index').wait_for()

    def tab_to(testid: str, presses: int = 40) -> None:
        for _ in range(presses):
            page.keyboard.press('Tab')
            if page.evaluate('document.activeElement.dataset.testid') == testid:
                return
        pytest.fail(f'{testid} was not reached in {presses} Tab presses')

    tab_to('action-rebuild_index')
    page.keyboard.press('Enter')
    assert page.evaluate('document.activeElement.id') == 'pane-title'
    tab_to('run-action')
    run = page.get_by_test_id('run-action')
    assert run.evaluate('el => el.matches(":focus-visible")')
    outline = run.evaluate('el => { const s = getComputedStyle(el); return [s.outlineStyle, s.outlineWidth]; }')
    assert outline[0] != 'none' and outline[1] != '0px'
    page.screenshot(path=str(ARTIFACTS / 'keyboard-focus-on-run.png'))
    page.keyboard.press('Enter')
    page.locator('[data-testid=result].result-ok').wait_for()
    assert console.result_json()['users'] == 8
