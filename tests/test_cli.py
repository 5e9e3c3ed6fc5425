"""The ``jet-sqla`` command, through click's CliRunner and as real processes on loopback ports."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session

from jet_sqla import cli

from . import models
from .apps.cli_server import REPO, free_port, run, serving
from .conftest import (
    POSTGRES_URL,
    TOKEN,
    database_url,
    fresh_engine,
    private_database,
    require_server,
)
from .models import Account, User

# The command sets environment variables and installs logging: undone after each test.
pytestmark = pytest.mark.usefixtures('cli_process_state')


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), env=env, catch_exceptions=False)


def assert_one_line_error(result: Result | subprocess.CompletedProcess[str], exit_code: int, *fragments: str) -> None:
    """The failure is one line on stderr, with the exit code, and no traceback anywhere."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    stderr = result.stderr
    stdout = result.stdout
    assert code == exit_code, (code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith('Error: ')
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert 'Traceback' not in stderr + stdout


def closed_port_url() -> str:
    return f'postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere'


def sqlite_url(tmp_path: Path, name: str = 'app.db') -> str:
    return f'sqlite:///{tmp_path / name}'


class TestServeRefusesClearly:
    @pytest.mark.parametrize('args, code, fragments', [
        (['nosuch_module_xyz:bridge'], 1, ['importing nosuch_module_xyz', 'No module named']),
        (['tests.apps.cli_apps:missing'], 1, ["has no attribute 'missing'"]),
        (['tests.models:Base'], 1, ['tests.models:Base is a', 'expected a Bridge, a falcon.App']),
        (['not a target!'], 1, ['neither module:attribute nor a database URL']),
        ([], 2, ['give a TARGET', "serve --help')"]),
        (['--workers', '0', 'x:y'], 2, ["Invalid value for '--workers'"]),
    ])
    def test_bad_targets(self, args: list[str], code: int, fragments: list[str]) -> None:
        # Usage errors (2) are one line too, like every other failure.
        assert_one_line_error(invoke('serve', '--token', TOKEN, *args), code, *fragments)

    def test_reflect_without_any_authentication(self, tmp_path: Path) -> None:
        assert_one_line_error(invoke('serve', sqlite_url(tmp_path)), 1,
                              'no authentication is configured', '--token', 'JET_SQLA_TOKEN', '--insecure')

    def test_module_without_any_authentication(self, tmp_path: Path) -> None:
        result = invoke('serve', 'tests.apps.cli_apps:plain', env={'JET_SQLA_DATABASE_URL': sqlite_url(tmp_path)})
        assert_one_line_error(result, 1, 'no authentication is configured')

    def test_unreachable_database_in_reflect_mode(self) -> None:
        result = invoke('serve', closed_port_url(), '--token', TOKEN)
        assert_one_line_error(result, cli.EXIT_DATABASE, 'the database did not answer', 'Connection refused')

    def test_unreachable_database_of_a_module(self) -> None:
        # A port of its own: the default 8000 may be taken on a shared machine, and the bind is checked first.
        result = invoke('serve', 'tests.apps.cli_apps:plain', '--token', TOKEN, '--bind', f'127.0.0.1:{free_port()}',
                        env={'JET_SQLA_DATABASE_URL': closed_port_url()})
        assert_one_line_error(result, cli.EXIT_DATABASE, 'connecting to postgresql+psycopg://', 'did not answer')

    def test_audit_table_missing(self, tmp_path: Path) -> None:
        result = invoke('serve', 'tests.apps.cli_apps:audited', '--token', TOKEN,
                        env={'JET_SQLA_DATABASE_URL': sqlite_url(tmp_path)})
        assert_one_line_error(result, 1, 'jet_sqla_action_log', 'run `jet-sqla db upgrade --database-url URL` first')

    def test_an_unknown_worker_class(self, tmp_path: Path) -> None:
        fresh_engine(sqlite_url(tmp_path)).dispose()
        result = invoke('serve', sqlite_url(tmp_path), '--token', TOKEN, '--worker-class', 'nosuch')
        assert_one_line_error(result, 1, "--worker-class 'nosuch' cannot be loaded")

    def test_an_address_in_use(self, tmp_path: Path) -> None:
        fresh_engine(sqlite_url(tmp_path)).dispose()
        with socket.socket() as busy:
            busy.bind(('127.0.0.1', 0))
            busy.listen()
            port = busy.getsockname()[1]
            result = invoke('serve', sqlite_url(tmp_path), '--token', TOKEN, '--bind', f'127.0.0.1:{port}')
        assert_one_line_error(result, 1, f'cannot listen on 127.0.0.1:{port}', 'Address already in use')

    def test_a_password_in_the_url_is_never_printed(self) -> None:
        url = f'postgresql+psycopg://postgres:pa55word@127.0.0.1:{free_port()}/nowhere'
        result = invoke('serve', url, '--token', TOKEN)
        assert result.exit_code == cli.EXIT_DATABASE and 'pa55word' not in result.stderr + result.stdout

    def test_traceback_on_request(self) -> None:
        with pytest.raises(ModuleNotFoundError):
            invoke('--traceback', 'serve', '--token', TOKEN, 'nosuch_module_xyz:bridge')


class TestServerSettings:
    def test_defaults_live_in_one_place(self) -> None:
        cores = len(os.sched_getaffinity(0))
        assert cli.SERVE_DEFAULTS == cli.ServeDefaults(workers=max(2, cores), threads=8,
                                                       worker_class='jet_sqla.workers.BufferingWorker',
                                                       bind='127.0.0.1:8000')
        help_text = invoke('serve', '--help').stdout
        assert f'[default: {max(2, cores)}]' in help_text
        assert '[default:jet_sqla.workers.BufferingWorker]' in ''.join(help_text.split())

    def test_gunicorn_gets_the_settings_and_each_worker_its_own_pool(self, tmp_path: Path) -> None:
        os.environ['JET_SQLA_DATABASE_URL'] = sqlite_url(tmp_path)
        os.environ['JET_SQLA_TOKEN'] = TOKEN
        loaded = cli.load_target('tests.apps.cli_apps:plain')
        [bridge] = loaded.bridges
        engines = cli.serving._engines_in_process(loaded.bridges)
        assert any(engine is bridge.engine for engine in engines)
        server = cli.GunicornServer(loaded.app, {'bind': ['127.0.0.1:0'], 'workers': 3, 'threads': 5,
                                                 'worker_class': 'gthread', 'preload_app': True}, engines)
        assert (server.cfg.workers, server.cfg.threads, server.cfg.preload_app) == (3, 5, True)
        assert server.cfg.worker_class_str == 'gthread'
        assert server.wsgi() is loaded.app
        pool = bridge.engine.pool
        server.cfg.post_fork(None, None)  # as in a freshly forked worker
        assert bridge.engine.pool is not pool  # new connections from here on; the master's were left alone


class TestActionsCommand:
    def test_lists_collections_options_and_forms(self, tmp_path: Path) -> None:
        engine = fresh_engine(sqlite_url(tmp_path))
        result = invoke('actions', 'tests.apps.cli_apps:audited', env={'JET_SQLA_DATABASE_URL': sqlite_url(tmp_path)})
        assert result.exit_code == 0, result.stderr
        out = result.stdout
        assert out.startswith('tests.apps.cli_apps:audited: 5 collections, 2 actions')
        for line in [
            '  users  (User; pk id; label name)',
            '    tier: options from its enum: BRONZE, GOLD',
            '    status: options from its enum: in-progress, done',
            '  accounts  (Account; pk id; label id)',
            '    owner_id: options from users (id, labelled by name)',
            '  promote  record action on users',
            '  increment  record action on counters',
        ]:
            assert line in out.splitlines(), (line, out)
        engine.dispose()

    def test_a_falcon_app_needs_its_bridge_in_a_module_variable(self, tmp_path: Path) -> None:
        fresh_engine(sqlite_url(tmp_path)).dispose()
        result = invoke('actions', 'tests.apps.cli_apps:app', env={'JET_SQLA_DATABASE_URL': sqlite_url(tmp_path)})
        assert_one_line_error(result, 1, 'whose Bridge is in no variable of its module', '(module:bridge)')

    def test_action_forms(self, tmp_path: Path) -> None:
        """The example shop, in its own process (inspected: it creates nothing, see test_cli_first_hour.py)."""
        result = run(['actions', 'jet_sqla.examples.shop.jet:bridge'], cwd=tmp_path,
                     env={'JET_SQLA_DATABASE_URL': sqlite_url(tmp_path, 'shop.db')})
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        for line in [
            '  account_transfer  common action; lock',
            '      account_from: ForeignKey, required, -> accounts',
            '      amount_from: DecimalField, required',
            '      description: TextField, optional',
            '      when: DateTimeField, optional',
            '  cancel_orders  bulk record action on orders; lock',
            '    city: options from city_options()',
        ]:
            assert line in lines, (line, result.stdout)

    @pytest.mark.parametrize('dialect', ['sqlite', 'postgresql', 'mariadb'])
    def test_reflect_mode(self, dialect: str, tmp_path: Path) -> None:
        url = database_url(dialect, tmp_path)
        fresh_engine(url).dispose()
        result = invoke('actions', url)
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert '    owner_id: options from users (id, labelled by name)' in lines
        assert '    tag_code: options from tags (code, labelled by title)' in lines
        assert '  (none declared)' in lines
        enums = ['    tier: options from its enum: BRONZE, GOLD', '    status: options from its enum: in-progress, done',
                 '    mood: options from its enum: happy, grumpy']
        # SQLite stores an Enum as VARCHAR: nothing is left to reflect. PostgreSQL's and MariaDB's are native.
        assert all((line in lines) is (dialect != 'sqlite') for line in enums), result.stdout


    def test_points_out_a_large_table_without_a_trigram_index_on_its_label(self, tmp_path: Path) -> None:
        url = database_url('postgresql', tmp_path)
        engine = fresh_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO users (id, name, tier, status) SELECT g, 'user ' || g, "
                                       "'BRONZE', 'done' FROM generate_series(1, 100000) AS g"))
            connection.execute(sa.text('ANALYZE users'))
        lines = invoke('actions', url).stdout.splitlines()
        statement = ('CREATE EXTENSION IF NOT EXISTS pg_trgm; '
                     'CREATE INDEX CONCURRENTLY users_name_trgm ON users USING gin (name gin_trgm_ops);')
        hint = [line for line in lines if line.startswith('  users: about ')]  # the planner's estimate of 100,000
        assert len(hint) == 1 and hint[0].endswith(' rows and no trigram index on name, so q searches of its '
                                                   'options read the table. Create one:'), lines
        assert f'      {statement}' in lines
        assert not any(line.startswith(('  tags:', '  documents:')) for line in lines)  # small tables
        with engine.connect().execution_options(isolation_level='AUTOCOMMIT') as connection:
            for part in statement.split('; '):
                connection.execute(sa.text(part))
        again = invoke('actions', url).stdout
        assert 'Search indexes' not in again and 'trigram' not in again
        engine.dispose()


class TestDbCommand:
    def test_upgrade_current_downgrade(self, db_url: str) -> None:
        engine = fresh_engine(db_url)
        shown = engine.url.render_as_string(hide_password=True)
        head = 'jet_sqla_0004'
        assert invoke('db', 'current', '--database-url', db_url).stdout == (
            f'none: jet_sqla tables are not created; run `jet-sqla db upgrade` (newest: {head})\n')
        assert invoke('db', 'upgrade', '--database-url', db_url).stdout == (
            f'jet_sqla tables of {shown}: none -> {head}\n')
        assert sa.inspect(engine).has_table('jet_sqla_action_log')
        assert sa.inspect(engine).has_table('jet_sqla_job')
        assert invoke('db', 'current', env={'JET_SQLA_DATABASE_URL': db_url}).stdout == f'{head} (newest)\n'
        # One step by default, then all the way with 'base'.
        assert invoke('db', 'downgrade', '--database-url', db_url).stdout == (
            f'jet_sqla tables of {shown}: {head} -> jet_sqla_0003\n')
        assert 'changes' not in {column['name'] for column in sa.inspect(engine).get_columns('jet_sqla_action_log')}
        assert invoke('db', 'downgrade', '--database-url', db_url).stdout == (
            f'jet_sqla tables of {shown}: jet_sqla_0003 -> jet_sqla_0002\n')
        assert not sa.inspect(engine).has_table('jet_sqla_job')
        assert invoke('db', 'downgrade', 'base', '--database-url', db_url).stdout == (
            f'jet_sqla tables of {shown}: jet_sqla_0002 -> none\n')
        assert not sa.inspect(engine).has_table('jet_sqla_action_log')
        engine.dispose()

    def test_failures(self, tmp_path: Path) -> None:
        assert_one_line_error(invoke('db', 'upgrade', '--database-url', closed_port_url()), cli.EXIT_DATABASE,
                              'the database did not answer')
        assert_one_line_error(invoke('db', 'upgrade', '--database-url', 'nonsense'), 1, "'nonsense' is not a database URL")
        assert_one_line_error(invoke('db', 'upgrade', 'bogus', '--database-url', sqlite_url(tmp_path)), 1,
                              "Can't locate revision identified by 'bogus'")
        assert_one_line_error(invoke('db', 'current'), 2, "Missing option '--database-url'")


# --- Real processes ----------------------------------------------------------


def log_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a --log-format json log, decoded; a line that is not JSON fails the test."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class TestServeProcess:
    def test_serves_logs_json_and_never_a_token(self, tmp_path: Path) -> None:
        url = sqlite_url(tmp_path)
        engine = fresh_engine(url)
        with Session(engine) as session, session.begin():
            session.add(User(id=1, name='Ada'))
        wrong = 'wrong-token-5c1f'
        args = ['serve', 'tests.apps.cli_apps:plain', '--bind', '127.0.0.1:0', '--workers', '2', '--threads', '2',
                '--token', TOKEN, '--log-format', 'json', '--access-log']
        with serving(args, log_path=tmp_path / 'server.log', token=TOKEN, env={'JET_SQLA_DATABASE_URL': url}) as server:
            assert server.request('GET', '/api/health') == (200, {'status': 'ok'})
            status, body = server.message('get_action_list', token=wrong)
            assert (status, body['error_code']) == (401, 'unauthorized')
            status, body = server.message('execute_action', {'name': 'promote', 'params': {'ids': '1'}})
            assert (status, body) == (200, {'result': True, 'tier': 'GOLD'})
            status, body = server.message('execute_action', {'name': 'promote', 'params': {'ids': '1'}})
            assert (status, list(body)) == (400, ['non_field_errors'])
            # INFO lines reach the log within each worker's writer interval (0.1 s), and the two workers'
            # lines interleave in any order: wait for every line the asserts below look for.
            awaited = ('"action ran"', '"action failed"', '"status":401', '"status":200', '"status":400')
            text = server.log_once(lambda text: all(line in text for line in awaited))
        records = log_lines(text)
        assert sum(1 for r in records if r['msg'].startswith('Booting worker')) == 2
        ran = [r for r in records if r['msg'] == 'action ran']
        failed = [r for r in records if r['msg'] == 'action failed']
        assert [(r['action'], r['outcome'], r['ids']) for r in ran] == [('promote', 'success', 1)]
        assert [(r['action'], r['code']) for r in failed] == [('promote', 'action_error')]
        requests = [r for r in records if r['logger'] == 'gunicorn.access']
        assert {(r['method'], r['path'], r['status']) for r in requests} >= {('POST', '/api/messages/', 401),
                                                                              ('GET', '/api/health', 200)}
        assert TOKEN not in text and wrong not in text
        engine.dispose()

    def test_by_default_logs_every_action_run_failure_and_refused_token_but_no_access_line(self, tmp_path: Path) -> None:
        url = sqlite_url(tmp_path)
        engine = fresh_engine(url)
        with Session(engine) as session, session.begin():
            session.add(User(id=1, name='Ada'))
        args = ['serve', 'tests.apps.cli_apps:plain', '--bind', '127.0.0.1:0', '--workers', '1', '--threads', '2',
                '--token', TOKEN, '--log-format', 'json']
        with serving(args, log_path=tmp_path / 'server.log', token=TOKEN, env={'JET_SQLA_DATABASE_URL': url}) as server:
            assert server.message('get_action_list')[0] == 200
            assert server.message('execute_action', {'name': 'promote', 'params': {'ids': '1'}})[0] == 200
            assert server.message('execute_action', {'name': 'promote', 'params': {'ids': '1'}})[0] == 400
            assert server.message('get_action_list', token='wrong-token-5c1f')[0] == 401
            text = server.log_once(lambda text: '"action failed"' in text and '"authentication refused"' in text)
        records = log_lines(text)
        assert [r['outcome'] for r in records if r['msg'] == 'action ran'] == ['success']
        assert [r['code'] for r in records if r['msg'] == 'action failed'] == ['action_error']
        # Without access lines, the refused credential is still on record: where from, never what.
        refused = [r for r in records if r['msg'] == 'authentication refused']
        assert [(r['logger'], r['method'], r['path'], r['remote']) for r in refused] == [
            ('jet_sqla.auth', 'POST', '/api/messages/', '127.0.0.1')]
        assert 'wrong-token-5c1f' not in text and TOKEN not in text
        assert any(r['msg'].startswith('Booting worker') for r in records)  # gunicorn's own lines still come
        assert [r for r in records if r['logger'] == 'gunicorn.access'] == []
        engine.dispose()

    def test_every_option_from_the_environment(self, tmp_path: Path) -> None:
        """No TARGET, no option: JET_SQLA_DATABASE_URL is reflected, on JET_SQLA_BIND, with JET_SQLA_WORKERS."""
        url = sqlite_url(tmp_path)
        fresh_engine(url).dispose()
        port = free_port()
        env = {'JET_SQLA_DATABASE_URL': url, 'JET_SQLA_BIND': f'127.0.0.1:{port}', 'JET_SQLA_WORKERS': '3',
               'JET_SQLA_THREADS': '2', 'JET_SQLA_TOKEN': f'old-token,{TOKEN}', 'JET_SQLA_LOG_FORMAT': 'kv'}
        with serving(['serve'], log_path=tmp_path / 'server.log', token=TOKEN, env=env) as server:
            assert server.port == port
            assert server.message('get_action_list') == (200, [])
            assert server.message('get_action_list', token='old-token')[0] == 200  # both rotated tokens work
            status, options = server.message('get_field_options', {'model': 'accounts', 'field': 'owner_id'})
            assert (status, options) == (200, [])
            text = server.log_once(lambda text: text.count('Booting worker') >= 3, timeout=20)
        assert text.count('msg="Booting worker') == 3
        assert 'msg="Using worker: jet_sqla.workers.BufferingWorker"' in text
        assert 'old-token' not in text and TOKEN not in text

    def test_reflects_native_postgresql_enums(self, tmp_path: Path) -> None:
        url = database_url('postgresql', tmp_path)
        engine = fresh_engine(url)
        with Session(engine) as session, session.begin():
            session.add(User(id=1, name='Ada'))
            session.flush()
            session.add(Account(id=1, owner_id=1))
        args = ['serve', url, '--bind', '127.0.0.1:0', '--workers', '1', '--token', TOKEN]
        with serving(args, log_path=tmp_path / 'server.log', token=TOKEN) as server:
            status, tiers = server.message('get_field_options', {'model': 'users', 'field': 'tier'})
            assert status == 200 and [option['value'] for option in tiers] == ['BRONZE', 'GOLD']
            status, statuses = server.message('get_field_options', {'model': 'users', 'field': 'status'})
            assert status == 200 and [option['value'] for option in statuses] == ['in-progress', 'done']
            status, owners = server.message('get_field_options', {'model': 'accounts', 'field': 'owner_id'})
            assert status == 200 and [(o['value'], o['name']) for o in owners] == [(1, 'Ada')]
        engine.dispose()

    def test_errors_are_one_line(self, tmp_path: Path) -> None:
        assert_one_line_error(run(['serve', 'nosuch_module_xyz:bridge', '--token', TOKEN]), 1,
                              'importing nosuch_module_xyz')
        result = run(['serve', 'tests.apps.cli_apps:audited', '--token', TOKEN],
                     env={'JET_SQLA_DATABASE_URL': sqlite_url(tmp_path)})
        assert_one_line_error(result, 1, 'run `jet-sqla db upgrade --database-url URL` first')
        result = run(['serve', 'tests.apps.cli_apps:plain'], env={'JET_SQLA_DATABASE_URL': sqlite_url(tmp_path)})
        assert_one_line_error(result, 1, 'no authentication is configured')


class TestDemo:
    def test_creates_seeds_and_serves_the_shop_from_the_current_directory(self, tmp_path: Path) -> None:
        port = free_port()
        stdout = tmp_path / 'stdout.txt'
        with serving(['demo', '--bind', f'127.0.0.1:{port}'], log_path=tmp_path / 'server.log', cwd=tmp_path,
                     stdout_path=stdout) as server:
            banner = stdout.read_text()
            token = re.search(r'^  Token    (\S+)$', banner, re.MULTILINE).group(1)  # type: ignore[union-attr]
            assert len(token) >= 24
            base = f'http://127.0.0.1:{port}/api'
            assert f'  URL      {base}/messages/' in banner
            assert f'  Console  {base}/console/' in banner
            assert 'created and seeded in ' + str(tmp_path / 'shop.db') in banner
            curl = next(line.strip() for line in banner.splitlines() if line.strip().startswith('curl '))
            status, body = self.send_like_curl(curl)
            assert status == 200 and {action['name'] for action in body} >= {'promote', 'account_transfer'}
            server.token = token
            assert server.message('execute_action', {'name': 'promote', 'params': {'ids': '1'}}) == (200, {'result': True})
            # The background action runs on the embedded pool of the forked server worker.
            status, accepted = server.message('execute_action', {'name': 'apply_discount', 'model': 'orders',
                                                                 'params': {'ids': '1,2,3', 'percent': 10}})
            assert status == 200 and (accepted['total'], accepted['chunks']) == (3, 2), accepted
            deadline = time.monotonic() + 30
            while (job := server.message('get_job', {'job': accepted['job']})[1])['status'] != 'succeeded':
                assert time.monotonic() < deadline and job['status'] in ('queued', 'running'), job
                time.sleep(0.05)
            assert job['done'] == 3
            console = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
            console.request('GET', '/api/console/')
            page = console.getresponse()
            assert page.status == 200 and b'<html' in page.read().lower()
            console.close()
            assert token not in server.log()  # printed for the user on stdout; never in the log
        assert (tmp_path / 'shop.db').is_file()
        with sa.create_engine(f'sqlite:///{tmp_path / "shop.db"}').connect() as connection:
            assert connection.execute(sa.text('SELECT count(*) FROM users')).scalar_one() == 8

    def test_a_second_run_reuses_the_database_and_the_given_token(self, tmp_path: Path) -> None:
        for attempt in ('created and seeded', 'reused'):
            stdout = tmp_path / f'{attempt}.txt'
            with serving(['demo', '--bind', f'127.0.0.1:{free_port()}'], log_path=tmp_path / 'server.log',
                         cwd=tmp_path, stdout_path=stdout, env={'JET_SQLA_TOKEN': 'my-own-demo-token'}) as server:
                server.token = 'my-own-demo-token'
                assert server.message('get_action_list')[0] == 200
            banner = stdout.read_text()
            assert attempt in banner and '  Token    my-own-demo-token' in banner

    @staticmethod
    def send_like_curl(line: str) -> tuple[int, Any]:
        """Do what the printed curl line says: its URL, its headers and its body (-d)."""
        words = shlex.split(line)
        assert words[:2] == ['curl', '-s']
        url, headers, body = words[2], {}, None
        rest = iter(words[3:])
        for word in rest:
            if word == '-H':
                name, _, value = next(rest).partition(': ')
                headers[name] = value
            elif word == '-d':
                body = next(rest)
            else:
                raise AssertionError(f'unexpected curl argument {word!r}')
        match = re.match(r'http://([\d.]+):(\d+)(/.*)', url)
        assert match is not None, url
        connection = http.client.HTTPConnection(match.group(1), int(match.group(2)), timeout=10)
        connection.request('POST' if body is not None else 'GET', match.group(3), body, headers)
        response = connection.getresponse()
        decoded = json.loads(response.read())
        connection.close()
        return response.status, decoded


# --- docker-compose.yml --------------------------------------------------------


COMPOSE = REPO / 'docker-compose.yml'


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""
    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator == ':?':
            raise KeyError(f'{name}: {argument}')
        return argument or ''
    return re.sub(r'\$\{(\w+)(?:(:[-?])([^}]*))?\}', substitute, value)


class TestCompose:
    @pytest.fixture
    def compose(self) -> dict[str, Any]:
        parsed: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
        return parsed

    def test_structure(self, compose: dict[str, Any]) -> None:
        db, app = compose['services']['db'], compose['services']['app']
        assert db['image'].startswith('postgres:')
        assert 'pg_isready' in ' '.join(db['healthcheck']['test'])
        assert app['depends_on'] == {'db': {'condition': 'service_healthy'}}
        assert app['command'][:2] == ['jet-sqla', 'serve']
        assert '/api/health' in ' '.join(app['healthcheck']['test'])
        url = sa.make_url(app['environment']['JET_SQLA_DATABASE_URL'])
        assert (url.host, url.username, url.password, url.database) == (
            'db', db['environment']['POSTGRES_USER'], db['environment']['POSTGRES_PASSWORD'],
            db['environment']['POSTGRES_DB'])
        dockerfile = app['build']['dockerfile_inline']
        assert "pip install --no-cache-dir '.[postgres]'" in dockerfile
        for path in ('pyproject.toml', 'README.md', 'jet_sqla', 'migrations', 'examples'):
            assert path in dockerfile and (REPO / path).exists()

    def test_the_token_must_be_given(self, compose: dict[str, Any]) -> None:
        with pytest.raises(KeyError, match='JET_SQLA_TOKEN'):
            interpolate(compose['services']['app']['environment']['JET_SQLA_TOKEN'], {})

    def test_the_app_command_and_its_health_check_work(self, compose: dict[str, Any], tmp_path: Path) -> None:
        """The app service's command and environment, run here against the test PostgreSQL on a free port."""
        require_server(POSTGRES_URL)
        app = compose['services']['app']
        port = free_port()
        env = {name: interpolate(str(value), {'JET_SQLA_TOKEN': TOKEN}) for name, value in app['environment'].items()}
        env['JET_SQLA_DATABASE_URL'] = private_database(POSTGRES_URL)  # instead of the compose network's db:5432
        env['JET_SQLA_BIND'] = f'127.0.0.1:{port}'
        env['JET_SQLA_WORKERS'] = '1'
        cleaner = sa.create_engine(env['JET_SQLA_DATABASE_URL'])
        models.drop_everything(cleaner)
        cleaner.dispose()
        command = app['command']
        assert command[0] == 'jet-sqla'
        with serving(command[1:], log_path=tmp_path / 'server.log', token=TOKEN, env=env, cwd=tmp_path) as server:
            status, actions = server.message('get_action_list')
            assert status == 200 and 'account_transfer' in {action['name'] for action in actions}
            check = [part.replace('127.0.0.1:8000', f'127.0.0.1:{port}') for part in app['healthcheck']['test'][1:]]
            assert check[0] == 'python'
            result = subprocess.run([sys.executable, *check[1:]], capture_output=True, timeout=30, check=False)
            assert result.returncode == 0, result.stderr
            log_lines(server.log())  # JET_SQLA_LOG_FORMAT=json: every line is JSON
        # With nothing listening, the same check fails: it can tell.
        result = subprocess.run([sys.executable, *check[1:]], capture_output=True, timeout=30, check=False)
        assert result.returncode != 0
