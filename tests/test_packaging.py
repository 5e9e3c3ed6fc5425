"""The package as a user gets it: the sdist and the wheel built from it, installed into a fresh venv.

The build runs ``python -m build``, which makes the sdist and then the wheel
from that sdist, so a file the sdist forgets is missing from the wheel too.
The wheel is installed with its driver extras by pip, as a user would install
it, and run from a directory outside the checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from jet_sqla import migrations

from .apps.cli_server import REPO, environment

#: What a wheel must carry besides the modules: the console's files, the migrations, the typing marker, the example.
REQUIRED_IN_WHEEL = (
    'jet_sqla/py.typed',
    'jet_sqla/console/index.html',
    'jet_sqla/console/console.js',
    'jet_sqla/console/console.css',
    'jet_sqla/migrations/env.py',
    'jet_sqla/migrations/script.py.mako',
    'jet_sqla/migrations/versions/0001_action_log.py',
    'jet_sqla/examples/shop/jet.py',
    'jet_sqla/examples/shop/models.py',
    'jet_sqla/examples/shop/seed.py',
    'jet_sqla/gunicorn_conf.py',
    'jet_sqla/cli/commands.py',
)


@dataclass
class Installed:
    """A built sdist and wheel, and a fresh venv with the wheel installed."""

    sdist: Path
    wheel: Path
    venv: Path
    elsewhere: Path
    timings: dict[str, float]

    def run(self, *command: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        clean = environment()
        clean.pop('PYTHONPATH', None)  # the checkout must not be importable: only the installed copy
        return subprocess.run([str(self.venv / 'bin' / command[0]), *command[1:]], cwd=self.elsewhere, env=clean,
                              capture_output=True, text=True, timeout=120, check=False, **kwargs)


def _step(timings: dict[str, float], name: str, command: list[str], **kwargs: Any) -> None:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, **kwargs)
    timings[name] = round(time.monotonic() - started, 1)
    assert result.returncode == 0, f'{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'


@pytest.fixture(scope='module')
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp('packaging')
    clean = environment()
    clean.pop('PYTHONPATH', None)
    timings: dict[str, float] = {}
    dist = root / 'dist'
    # Built from the checkout's tracked and untracked files alike, as `pip install .` would.
    _step(timings, 'build', [sys.executable, '-m', 'build', '--outdir', str(dist), str(REPO)], env=clean)
    [sdist] = dist.glob('jet_sqla-*.tar.gz')
    [wheel] = dist.glob('jet_sqla-*.whl')
    venv = root / 'venv'
    _step(timings, 'venv', [sys.executable, '-m', 'venv', '--without-pip', str(venv)])
    # This venv's pip installs into the new one; the dependencies and extras resolve as for any user.
    _step(timings, 'install', [sys.executable, '-m', 'pip', '--python', str(venv / 'bin' / 'python'), 'install',
                               '--quiet', '--no-compile', f'{wheel}[postgres,mysql]'], env=clean)
    elsewhere = root / 'elsewhere'
    elsewhere.mkdir()
    yield Installed(sdist, wheel, venv, elsewhere, timings)
    print(f'packaging timings (s): {timings}')


def test_the_wheel_carries_the_console_migrations_typing_marker_and_example(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = [name for name in REQUIRED_IN_WHEEL if name not in names]
    assert missing == []
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / 'jet_sqla').rglob('*.py')}
    assert modules <= names, modules - names  # every module of the package, none forgotten
    [entry_points] = [name for name in names if name.endswith('.dist-info/entry_points.txt')]
    assert 'jet-sqla = jet_sqla.cli:main' in zipfile.ZipFile(installed.wheel).read(entry_points).decode()
    [metadata] = [name for name in names if name.endswith('.dist-info/METADATA')]
    text = zipfile.ZipFile(installed.wheel).read(metadata).decode()
    assert 'Provides-Extra: postgres' in text and 'Provides-Extra: mysql' in text


def test_the_sdist_carries_what_the_wheel_is_built_from(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as archive:
        names = {name.split('/', 1)[1] for name in archive.getnames() if '/' in name}
    for name in ('pyproject.toml', 'README.md', 'jet_sqla/py.typed', 'jet_sqla/console/console.js',
                 'migrations/versions/0001_action_log.py', 'examples/shop/jet.py', 'tests/conftest.py',
                 'tests/apps/cli_apps.py'):
        assert name in names, name
    assert not any('__pycache__' in name or name.endswith('.pyc') for name in names)


def test_the_installed_command_runs_from_the_wheel(installed: Installed) -> None:
    version = installed.run('jet-sqla', '--version')
    assert version.returncode == 0, version.stderr
    expected = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['version']
    assert version.stdout.strip() == f'jet-sqla, version {expected}'
    where = installed.run('python', '-c', 'import jet_sqla, jet_sqla.gunicorn_conf, psycopg, pymysql; '
                                          'print(jet_sqla.__file__)')
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(installed.venv)), where.stdout  # the wheel's copy, not the checkout
    listed = installed.run('jet-sqla', 'actions', 'jet_sqla.examples.shop.jet:bridge')
    assert listed.returncode == 0, listed.stderr
    assert re.match(r'jet_sqla.examples.shop.jet:bridge: 4 collections, \d+ actions\n', listed.stdout), listed.stdout


def test_db_upgrade_from_the_installed_wheel(installed: Installed) -> None:
    """``jet-sqla db upgrade`` finds the migrations inside the installed package, from any directory."""
    database = installed.elsewhere / 'audit.db'
    located = installed.run('python', '-c', 'import jet_sqla.migrations as m; print(m.script_location())')
    assert located.stdout.strip().startswith(str(installed.venv)), located.stdout
    upgraded = installed.run('jet-sqla', 'db', 'upgrade', '--database-url', f'sqlite:///{database}')
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith(f'none -> {", ".join(migrations.heads())}')
    engine = sa.create_engine(f'sqlite:///{database}')
    assert {'jet_sqla_action_log', migrations.VERSION_TABLE} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_the_quick_start_install_line_names_extras_that_exist() -> None:
    readme = (REPO / 'README.md').read_text()
    quick_start = readme.split('## Quick start', 1)[1]
    first_block = re.search(r'```sh\n(.*?)```', quick_start, re.DOTALL)
    assert first_block is not None and quick_start.index('```sh') < quick_start.index('```python')
    lines = [line for line in first_block.group(1).splitlines() if line.strip() and not line.startswith('#')]
    assert lines[0].startswith("pip install '.[postgres]'"), lines[0]  # works from a checkout today
    extras = set(tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['optional-dependencies'])
    named = set(re.findall(r"'(?:\.|jet-sqla)\[(\w+)\]'", first_block.group(1)))
    assert {'postgres', 'mysql'} <= named <= extras, (named, extras)
