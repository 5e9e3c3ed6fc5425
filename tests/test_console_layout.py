"""The console on every screen, in a real headless Chromium: at 390, 768, 1024 and 1440 px wide.

At each width the page never scrolls sideways (a wide table scrolls inside its
own box), foreign-key columns show the related row's label, and a rejected
token stays in the box so that it can be corrected. The browser, the example
shop and the server are those of ``tests/test_console.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .apps.console_app import TOKEN, Server
from .test_console import ARTIFACTS, TOKEN_KEY, browser, shop  # noqa: F401 - the fixtures, shared

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WIDTHS = (390, 768, 1024, 1440)


@pytest.fixture(params=WIDTHS, ids=[f'{width}px' for width in WIDTHS])
def page(request: pytest.FixtureRequest, browser: Browser, shop: Server) -> Iterator[Page]:  # noqa: F811
    width: int = request.param
    context = browser.new_context(viewport={'width': width, 'height': 800})
    context.set_default_timeout(5_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on('pageerror', lambda error: errors.append(str(error)))
    tab.goto(f'{shop.url}/api/console/')
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield tab
    finally:
        try:
            tab.screenshot(path=str(ARTIFACTS / f'{request.node.name}.png'), full_page=True)
        finally:
            context.close()
    assert errors == []


def sign_in(page: Page, token: str = TOKEN) -> None:
    page.get_by_test_id('token-input').fill(token)
    page.get_by_test_id('token-input').press('Enter')


def page_overflow(page: Page) -> int:
    """How far the page reaches past the window's right edge, in px (0 when nothing scrolls sideways)."""
    return int(page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth'))


def outside_the_window(page: Page) -> list[str]:
    """Elements whose right edge lies past the window, other than the contents of a scrolling table box."""
    found: list[str] = page.evaluate('''() => {
        const limit = document.documentElement.clientWidth + 0.5;
        return [...document.querySelectorAll('body *')]
            .filter((el) => !el.closest('.table-wrap') || el.classList.contains('table-wrap'))
            .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > limit)
            .map((el) => `${el.tagName.toLowerCase()}.${el.className} right=${el.getBoundingClientRect().right}`);
    }''')
    return found


def test_no_sideways_scroll_and_wide_tables_scroll_in_their_box(page: Page) -> None:
    width = page.viewport_size['width'] if page.viewport_size else 0
    assert page_overflow(page) == 0  # the sign-in page
    sign_in(page)
    for action in ('action-mail_users', 'action-cancel_orders', 'action-ship_orders'):
        page.get_by_test_id(action).click()
        table = page.get_by_test_id('records-table')
        table.wait_for()
        assert page_overflow(page) == 0, (action, outside_the_window(page))
        assert outside_the_window(page) == [], action
        box = page.locator('.table-wrap')
        scrolls = box.evaluate('el => [el.scrollWidth, el.clientWidth]')
        table_width = table.evaluate('el => el.getBoundingClientRect().width')
        if table_width > scrolls[1] + 1:  # fractional widths round either way
            # Wider than its box: the box scrolls, and it can reach the last column.
            assert scrolls[0] > scrolls[1]
            box.evaluate('el => { el.scrollLeft = el.scrollWidth; }')
            last = table.locator('thead th').last
            right = last.evaluate('el => el.getBoundingClientRect().right')
            assert right <= box.evaluate('el => el.getBoundingClientRect().right') + 1
    if width == 390:
        # The users table is wider than a phone: this width exercises the box's own scrolling.
        page.get_by_test_id('action-mail_users').click()
        page.get_by_test_id('records-table').wait_for()
        assert page.locator('.table-wrap').evaluate('el => el.scrollWidth > el.clientWidth')
    # A form with a ForeignKey search open, and a result with an error, stay inside the window too.
    page.get_by_test_id('action-account_transfer').click()
    page.get_by_test_id('field-account_from').fill('a')
    page.locator('[data-testid=field-account_from] ~ .combo-pop li[role=option]').first.wait_for()
    assert page_overflow(page) == 0, outside_the_window(page)
    page.keyboard.press('Escape')
    page.get_by_test_id('run-action').click()
    page.locator('[data-testid=result].result-error').wait_for()
    assert page_overflow(page) == 0, outside_the_window(page)


def test_foreign_key_columns_show_the_related_label(page: Page) -> None:
    sign_in(page)
    page.get_by_test_id('action-cancel_orders').click()
    table = page.get_by_test_id('records-table')
    table.wait_for()
    assert '→ users' in table.locator('thead th', has_text='user_id').inner_text()
    row = table.locator('tr', has=page.get_by_test_id('select-3'))
    cell = row.locator('td[data-column=user_id]')
    assert cell.inner_text() == 'Grace Hopper · 3'  # the label, with the key beside it
    assert cell.is_visible()
    # A column that is not a foreign key shows its bare value.
    assert row.locator('td[data-column=id]').inner_text() == '3'


def test_a_wrong_token_is_kept_to_be_corrected(page: Page) -> None:
    typo = TOKEN + 'x'
    sign_in(page, typo)
    page.locator('#login-error').filter(has_text='token').wait_for()
    token_input = page.get_by_test_id('token-input')
    assert token_input.input_value() == typo  # still there to fix
    assert token_input.get_attribute('aria-invalid') == 'true'
    assert page.evaluate(f'sessionStorage.getItem("{TOKEN_KEY}")') is None  # but never kept once refused
    assert page_overflow(page) == 0
    page.get_by_test_id('token-show').click()  # the user can see what they typed
    assert token_input.get_attribute('type') == 'text'
    assert page.get_by_test_id('token-show').get_attribute('aria-pressed') == 'true'
    token_input.press('End')
    token_input.press('Backspace')
    token_input.press('Enter')
    page.get_by_test_id('action-mail_users').wait_for()
    assert page.evaluate(f'sessionStorage.getItem("{TOKEN_KEY}")') == TOKEN
    # Signing out, on purpose, clears the box and hides the token again.
    page.get_by_role('button', name='Sign out').click()
    page.get_by_test_id('login-form').wait_for()
    assert token_input.input_value() == '' and token_input.get_attribute('type') == 'password'
