"""jet_sqla's revisions inside a user's own Alembic tree, as the README tells users to run them.

The merged-tree workflow (``alembic merge heads``, or ``upgrade heads``), the
``alembic stamp <current revision>`` step when moving from ``jet-sqla db upgrade``
to the merged tree, and what a config without ``path_separator`` does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from jet_sqla import migrations

from .test_migrations import schema_differences, tables, user_tree

MERGED = '''\
    path_separator = space
    version_locations = %(here)s/alembic/versions jet_sqla.migrations:versions
    '''


def alembic(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The alembic command, from the user's project directory, as a user runs it."""
    return subprocess.run([sys.executable, '-m', 'alembic', *args], cwd=root, capture_output=True, text=True,
                           timeout=120, check=False)


def project(root: Path, engine: sa.Engine, config_lines: str = MERGED) -> Path:
    ini = user_tree(root, engine.url.render_as_string(hide_password=False), config_lines)
    # `alembic init` gives every project this template; `alembic merge` and `revision` need it.
    shutil.copy(Path(migrations.script_location()) / 'script.py.mako', root / 'alembic' / 'script.py.mako')
    return ini


def versions(engine: sa.Engine) -> set[str]:
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(sa.text('SELECT version_num FROM alembic_version'))}


def test_head_fails_until_the_heads_are_merged_then_everything_works(engine: sa.Engine, tmp_path: Path) -> None:
    project(tmp_path, engine)
    refused = alembic(tmp_path, 'upgrade', 'head')
    assert refused.returncode != 0 and 'Multiple head revisions' in refused.stdout + refused.stderr
    assert alembic(tmp_path, 'upgrade', 'heads').returncode == 0  # the other way: run with heads
    merged = alembic(tmp_path, 'merge', 'heads', '-m', 'merge jet_sqla')
    assert merged.returncode == 0, merged.stderr
    upgraded = alembic(tmp_path, 'upgrade', 'head')
    assert upgraded.returncode == 0, upgraded.stderr
    assert len(versions(engine)) == 1  # one head now: the merge revision
    # autogenerate works again, and leaves jet_sqla's table alone (its MetaData is in target_metadata).
    generated = alembic(tmp_path, 'revision', '--autogenerate', '-m', 'next')
    assert generated.returncode == 0, generated.stderr
    script = next((tmp_path / 'alembic' / 'versions').glob('*_next.py')).read_text()
    assert 'jet_sqla_action_log' not in script
    assert {'widgets', 'jet_sqla_action_log'} <= tables(engine)


def test_moving_from_standalone_needs_a_stamp(engine: sa.Engine, tmp_path: Path) -> None:
    migrations.upgrade(engine)  # what `jet-sqla db upgrade` did before the move
    (head,) = migrations.heads()
    assert migrations.current(engine) == (head,)
    project(tmp_path, engine)
    clash = alembic(tmp_path, 'upgrade', 'heads')
    assert clash.returncode != 0
    assert 'already exists' in clash.stdout + clash.stderr
    if engine.dialect.name != 'mysql':  # MariaDB's DDL is not transactional
        assert 'widgets' not in tables(engine)  # the failed run left nothing behind
    stamped = alembic(tmp_path, 'stamp', head)
    assert stamped.returncode == 0, stamped.stderr
    upgraded = alembic(tmp_path, 'upgrade', 'heads')
    assert upgraded.returncode == 0, upgraded.stderr
    assert versions(engine) == {'shop_0001', head}
    assert schema_differences(engine, migrations_metadata()) == []


def migrations_metadata() -> sa.MetaData:
    from jet_sqla import audit
    return audit.metadata


def test_without_path_separator_alembic_warns_and_splits_on_spaces(engine: sa.Engine, tmp_path: Path) -> None:
    ini = project(tmp_path, engine, '''\
        version_locations = %(here)s/alembic/versions jet_sqla.migrations:versions
        ''')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        command.upgrade(Config(str(ini)), 'heads')
    assert any('path_separator' in str(warning.message) for warning in caught), [str(w.message) for w in caught]
    assert {'widgets', 'jet_sqla_action_log'} <= tables(engine)
