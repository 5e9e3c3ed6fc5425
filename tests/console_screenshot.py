"""Make the README's screenshot of the console: ``python -m tests.console_screenshot [out.png]``.

It serves the console test app over a fresh SQLite database, opens a record
action with several field types in headless Chromium, selects two rows, fills
the form, and captures the page. Nothing is run, so nothing changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from .apps.console_app import CHROMIUM, REPO, TOKEN, serve

DEFAULT_OUTPUT = REPO / 'docs' / 'console.png'


def capture(output: Path) -> None:
    """Write the screenshot to ``output``."""
    with tempfile.TemporaryDirectory() as directory, \
            serve(f'sqlite:///{directory}/shop.db', log_path=Path(directory) / 'gunicorn.log') as server, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            # 1.5 device pixels per CSS pixel: sharp on high-density screens, still a small file.
            page = browser.new_page(viewport={'width': 1280, 'height': 800}, device_scale_factor=1.5)
            page.set_default_timeout(10_000)
            page.goto(f'{server.url}/api/console/')
            page.get_by_test_id('token-input').fill(TOKEN)
            page.get_by_test_id('token-input').press('Enter')
            page.get_by_test_id('action-ship_orders').click()
            for pk in ('2', '6'):
                page.get_by_test_id(f'select-{pk}').check()
            page.get_by_test_id('field-carrier').select_option(label='Courier')
            page.get_by_test_id('field-ship_on').fill('2026-12-01')
            page.get_by_test_id('field-packages').fill('2')
            page.get_by_test_id('field-express').check()
            page.get_by_test_id('field-note').fill('Handle with care.')
            page.evaluate('document.activeElement.blur()')  # no focus ring or hovered row in the picture
            page.mouse.move(0, 0)
            # As tall as the page, so that nothing scrolls and the sticky sidebar stays in place.
            height = page.evaluate('document.documentElement.scrollHeight')
            page.set_viewport_size({'width': 1280, 'height': height})
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output))
        finally:
            browser.close()


if __name__ == '__main__':
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    capture(target)
    print(target)
