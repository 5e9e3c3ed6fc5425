"""What a new user meets in the first hour of the ``jet-sqla`` command, each case as a real process.

Every failure is one line on stderr, never a traceback, with the documented
exit code: 1 for a setup to fix, 2 for a usage error, 3 for a database that
did not answer. Inspecting a setup writes nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import socket
import subprocess
from pathlib import Path

import sqlalchemy as sa

from jet_sqla.bridge import INSECURE_WARNING

from .apps.cli_server import free_port, run, serving
from .conftest import TOKEN, fresh_engine

EXIT_SETUP, EXIT_USAGE = 1, 2


def one_line_error(result: subprocess.CompletedProcess[str], exit_code: int, *fragments: str) -> str:
    """The failure is one ``Error:`` line on stderr with ``exit_code``, and no traceback anywhere."""
    assert result.returncode == exit_code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('Error: '), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert 'Traceback' not in result.stderr + result.stdout
    return lines[0]


def files_in(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def empty_sqlite(path: Path) -> str:
    """An existing SQLite file with no table in it."""
    engine = sa.create_engine(f'sqlite:///{path}')
    with engine.connect() as connection:
        connection.exec_driver_sql('PRAGMA user_version = 1')  # makes the file exist, creates no table
        connection.commit()
    engine.dispose()
    assert path.is_file()
    return f'sqlite:///{path}'


def test_version() -> None:
    result = run(['--version'])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'jet-sqla, version {importlib.metadata.version("jet-sqla")}'


class TestBind:
    def test_a_port_out_of_range_is_one_line(self, tmp_path: Path) -> None:
        one_line_error(run(['serve', '--bind', '127.0.0.1:99999', '--token', TOKEN, 'x:y']), EXIT_USAGE,
                       "'127.0.0.1:99999': the port must be between 0 and 65535")

    def test_not_host_port(self) -> None:
        for bind in ('localhost:abc', 'localhost', ':8000'):
            one_line_error(run(['serve', '--bind', bind, '--token', TOKEN, 'x:y']), EXIT_USAGE,
                           'expected HOST:PORT (or a bare PORT, for 127.0.0.1:PORT)')

    def test_a_bare_port_is_loopback_and_help_says_so(self, tmp_path: Path) -> None:
        assert 'a bare PORT means 127.0.0.1:PORT' in ' '.join(run(['serve', '--help']).stdout.split())
        url = f'sqlite:///{tmp_path / "app.db"}'
        fresh_engine(url).dispose()
        port = free_port()
        with serving(['serve', url, '--bind', str(port), '--workers', '1', '--token', TOKEN],
                     log_path=tmp_path / 'server.log', token=TOKEN) as server:
            assert server.request('GET', '/api/health') == (200, {'status': 'ok'})
            assert f'Listening at: http://127.0.0.1:{port}' in server.log_once('Listening at')


class TestSqliteFiles:
    def test_a_typo_in_the_file_name_is_an_error_and_creates_nothing(self, tmp_path: Path) -> None:
        for command in (['actions', 'sqlite:///emtpy.db'], ['serve', 'sqlite:///emtpy.db', '--token', TOKEN],
                        ['db', 'current', '--database-url', 'sqlite:///emtpy.db']):
            line = one_line_error(run(command, cwd=tmp_path), EXIT_SETUP, 'sqlite:///emtpy.db: no such file')
            assert str(tmp_path / 'emtpy.db') in line
        assert files_in(tmp_path) == set()

    def test_a_missing_directory_is_a_setup_error(self, tmp_path: Path) -> None:
        one_line_error(run(['serve', 'sqlite:///missing/dir/x.db', '--token', TOKEN], cwd=tmp_path), EXIT_SETUP,
                       "the directory 'missing/dir' does not exist")
        # A module whose engine points there: SQLite cannot open it, which is a path to fix, not an outage.
        result = run(['serve', 'tests.apps.cli_apps:plain', '--token', TOKEN, '--bind', '127.0.0.1:0'],
                     env={'JET_SQLA_DATABASE_URL': f'sqlite:///{tmp_path}/missing/dir/x.db'})
        one_line_error(result, EXIT_SETUP, 'cannot open the SQLite file', 'unable to open database file')
        assert files_in(tmp_path) == set()

    def test_a_database_with_no_table(self, tmp_path: Path) -> None:
        url = empty_sqlite(tmp_path / 'empty.db')
        one_line_error(run(['serve', url, '--token', TOKEN]), EXIT_SETUP, 'has no table to serve', '--allow-empty')
        listed = run(['actions', url])
        assert listed.returncode == 0, listed.stderr
        assert listed.stderr.startswith('Warning: sqlite:///') and 'has no table to serve' in listed.stderr
        assert ': 0 collections, 0 actions' in listed.stdout.splitlines()[0]
        with serving(['serve', url, '--allow-empty', '--bind', '127.0.0.1:0', '--workers', '1', '--token', TOKEN],
                     log_path=tmp_path / 'server.log', token=TOKEN) as server:
            assert server.message('get_action_list') == (200, [])


class TestDrivers:
    def test_a_missing_driver_names_the_extra(self) -> None:
        assert importlib.util.find_spec('MySQLdb') is None, 'this test needs mysqlclient to be absent'
        one_line_error(run(['actions', 'mysql+mysqldb://root@127.0.0.1/test']), EXIT_SETUP,
                       "the database driver 'MySQLdb' is not installed", 'mysql+pymysql://',
                       "pip install 'jet-sqla[mysql]'")

    def test_postgres_scheme(self) -> None:
        one_line_error(run(['serve', 'postgres://app@127.0.0.1/shop', '--token', TOKEN]), EXIT_SETUP,
                       "'postgres://' is not a SQLAlchemy URL scheme", 'postgresql+psycopg://',
                       "'jet-sqla[postgres]'")


class TestTargets:
    def test_an_import_error_names_the_file_and_line(self, tmp_path: Path) -> None:
        (tmp_path / 'broken_app.py').write_text('import os\n\nbridge = undefined_name\n')
        line = one_line_error(run(['serve', 'broken_app:bridge', '--token', TOKEN], cwd=tmp_path), EXIT_SETUP,
                              'importing broken_app', "NameError: name 'undefined_name' is not defined",
                              '(broken_app.py, line 3)', 'jet-sqla --traceback')
        assert line.endswith('shows the full traceback')
        (tmp_path / 'typo_app.py').write_text('x = 1\ndef broken(:\n')
        one_line_error(run(['actions', 'typo_app:bridge'], cwd=tmp_path), EXIT_SETUP,
                       'importing typo_app', '(typo_app.py, line 2)', '--traceback')
        # And --traceback does show it.
        shown = run(['--traceback', 'serve', 'broken_app:bridge', '--token', TOKEN], cwd=tmp_path)
        assert shown.returncode == 1 and 'Traceback' in shown.stderr and 'broken_app.py", line 3' in shown.stderr

    def test_no_authentication_names_every_way_to_give_it(self, tmp_path: Path) -> None:
        result = run(['serve', 'tests.apps.cli_apps:plain'], env={'JET_SQLA_DATABASE_URL': f'sqlite:///{tmp_path}/a.db'})
        one_line_error(result, EXIT_SETUP, 'no authentication is configured', 'token=', 'JET_SQLA_TOKEN', '--token')

    def test_a_missing_target_is_a_usage_error(self) -> None:
        one_line_error(run(['serve', '--token', TOKEN]), EXIT_USAGE, 'give a TARGET', "jet-sqla serve --help")
        one_line_error(run(['actions']), EXIT_USAGE, 'give a TARGET', "jet-sqla actions --help")

    def test_a_model_class_is_named_in_the_users_words(self) -> None:
        line = one_line_error(run(['actions', 'tests.models:User'], env={'JET_SQLA_TOKEN': TOKEN}), EXIT_SETUP,
                              'tests.models:User is a model class (User); expected a Bridge, a falcon.App',
                              'pass its declarative base to Bridge(…)')
        assert 'DeclarativeAttributeIntercept' not in line and 'Meta' not in line
        one_line_error(run(['actions', 'tests.models:Base'], env={'JET_SQLA_TOKEN': TOKEN}), EXIT_SETUP,
                       'tests.models:Base is a declarative base (Base)')


def test_inspecting_the_example_writes_nothing(tmp_path: Path) -> None:
    result = run(['actions', 'jet_sqla.examples.shop.jet:bridge'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.match(r'jet_sqla.examples.shop.jet:bridge: 4 collections, \d+ actions\n', result.stdout), result.stdout
    assert files_in(tmp_path) == set()  # no shop.db: nothing created, nothing seeded


def test_the_demo_on_a_busy_port_fails_before_its_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(['demo', '--bind', f'127.0.0.1:{port}'], cwd=tmp_path)
    one_line_error(result, EXIT_SETUP, f'cannot listen on 127.0.0.1:{port}', 'Address already in use')
    assert result.stdout == ''  # no banner, no token printed for a server that never ran
    assert files_in(tmp_path) == set()


def test_help_is_plain_text() -> None:
    for command in (['--help'], ['serve', '--help'], ['demo', '--help'], ['actions', '--help'],
                    ['db', 'upgrade', '--help']):
        result = run(command)
        assert result.returncode == 0, result.stderr
        assert '``' not in result.stdout and ':func:' not in result.stdout, result.stdout
    assert 'for example myapp.jet:bridge' in ' '.join(run(['serve', '--help']).stdout.split())


def test_the_insecure_banner_is_one_readable_line_once(tmp_path: Path) -> None:
    """``serve --insecure`` preloads the app in the master: one warning line, in JSON as in key=value."""
    url = f'sqlite:///{tmp_path / "app.db"}'
    fresh_engine(url).dispose()
    for log_format in ('json', 'kv'):
        log_path = tmp_path / f'{log_format}.log'
        args = ['serve', url, '--insecure', '--bind', '127.0.0.1:0', '--workers', '2', '--log-format', log_format]
        with serving(args, log_path=log_path) as server:
            assert server.message('get_action_list', token='anything')[0] == 200
            text = server.log()
        banners = [line for line in text.splitlines() if 'NO AUTHENTICATION' in line]
        assert len(banners) == 1, text
        if log_format == 'json':
            assert json.loads(banners[0])['msg'] == INSECURE_WARNING
        else:
            assert f'msg="{INSECURE_WARNING}"' in banners[0]
