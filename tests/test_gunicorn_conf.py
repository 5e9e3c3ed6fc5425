"""Plain gunicorn with ``--config python:jet_sqla.gunicorn_conf``: jet_sqla's log lines, as real processes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from jet_sqla.bridge import INSECURE_WARNING
from jet_sqla.cli import SERVE_DEFAULTS

from .apps.cli_server import environment
from .apps.server import REPO, Gunicorn
from .conftest import TOKEN, fresh_engine
from .models import User

CONFIG = 'python:jet_sqla.gunicorn_conf'


@contextlib.contextmanager
def plain_gunicorn(target: str, *options: str, log_path: Path, env: Mapping[str, str]) -> Iterator[Gunicorn]:
    """``gunicorn OPTIONS TARGET`` as a user runs it (no jet-sqla command), on a free loopback port."""
    command = [sys.executable, '-m', 'gunicorn', *options, '--bind', '127.0.0.1:0', '--no-control-socket',
               '--graceful-timeout', '3', target]
    with open(log_path, 'ab') as log:
        process = subprocess.Popen(command, cwd=REPO, env=environment(env), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Gunicorn(process, log_path, TOKEN)
    try:
        server.wait_until_healthy()
        yield server
    finally:
        server.stop()


def seeded(tmp_path: Path) -> str:
    url = f'sqlite:///{tmp_path / "app.db"}'
    engine = fresh_engine(url)
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
    engine.dispose()
    return url


def promote_twice(server: Gunicorn) -> None:
    client = server.client()
    assert client.execute('promote', ids='1').status == 200
    assert client.execute('promote', ids='1').status == 400  # already gold: an action_error
    client.close()


def wait_for(log_path: Path, text: str, seconds: float = 10) -> str:
    deadline = time.monotonic() + seconds
    while text not in (content := log_path.read_text(errors='replace')) and time.monotonic() < deadline:
        time.sleep(0.05)
    return content


def test_plain_gunicorn_logs_no_action_lines(tmp_path: Path) -> None:
    """The control: what a user got before, which the config file fixes."""
    log_path = tmp_path / 'plain.log'
    with plain_gunicorn('tests.apps.cli_apps:app()', '--workers', '1', log_path=log_path,
                        env={'JET_SQLA_DATABASE_URL': seeded(tmp_path), 'JET_SQLA_TOKEN': TOKEN}) as server:
        promote_twice(server)
        time.sleep(0.3)
    assert 'action ran' not in log_path.read_text()


def test_the_config_gives_jet_sqla_lines_as_json(tmp_path: Path) -> None:
    log_path = tmp_path / 'json.log'
    env = {'JET_SQLA_DATABASE_URL': seeded(tmp_path), 'JET_SQLA_TOKEN': TOKEN, 'JET_SQLA_LOG_FORMAT': 'json',
           'JET_SQLA_WORKERS': '2', 'JET_SQLA_THREADS': '2'}
    with plain_gunicorn('tests.apps.cli_apps:app()', '--config', CONFIG, log_path=log_path, env=env) as server:
        server.wait_for_workers(2)
        promote_twice(server)
        text = wait_for(log_path, 'action failed')
    records: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    ran = [r for r in records if r['msg'] == 'action ran']
    failed = [r for r in records if r['msg'] == 'action failed']
    assert [(r['logger'], r['action'], r['outcome']) for r in ran] == [('jet_sqla.actions', 'promote', 'success')]
    assert [(r['action'], r['code']) for r in failed] == [('promote', 'action_error')]
    # The serving defaults came with it: jet-sqla serve's worker class, as many as asked for in the environment.
    assert any(r['msg'] == f'Using worker: {SERVE_DEFAULTS.worker_class}' for r in records)
    assert sum(1 for r in records if r['msg'].startswith('Booting worker')) == 2
    assert not any(r['logger'] == 'gunicorn.access' for r in records)  # off by default, as under jet-sqla serve
    assert TOKEN not in text


def test_the_insecure_banner_once_per_process_and_readable_as_kv(tmp_path: Path) -> None:
    env = {'JET_SQLA_DATABASE_URL': seeded(tmp_path), 'JET_SQLA_INSECURE': '1'}
    # Without preload each worker imports the app: one line per worker, not one per build and start.
    log_path = tmp_path / 'workers.log'
    with plain_gunicorn('tests.apps.cli_apps:app()', '--config', CONFIG, '--workers', '2', log_path=log_path,
                        env=env) as server:
        server.wait_for_workers(2)
        for _ in range(2):  # each worker's first line of its own: wait until both imported the app
            server.client().request('GET', '/api/health')
        deadline = time.monotonic() + 10
        while log_path.read_text().count('NO AUTHENTICATION') < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a third line, were there one, would have time to show
        text = log_path.read_text()
    banners = [line for line in text.splitlines() if 'NO AUTHENTICATION' in line]
    assert len(banners) == 2, text
    assert len({line.split(' pid=')[1].split()[0] for line in banners}) == 2  # from two processes
    for line in banners:
        assert line.startswith('time=') and ' level=warning logger=jet_sqla ' in line
        assert f'msg="{INSECURE_WARNING}"' in line and '\\n' not in line  # one readable line, no escaped box
    # Preloaded, the master builds and starts it once; the forked workers do not repeat it.
    log_path = tmp_path / 'preload.log'
    with plain_gunicorn('tests.apps.cli_apps:app()', '--config', CONFIG, '--workers', '2', '--preload',
                        log_path=log_path, env=env) as server:
        server.wait_for_workers(2)
        text = log_path.read_text()
    assert sum(1 for line in text.splitlines() if 'NO AUTHENTICATION' in line) == 1, text
