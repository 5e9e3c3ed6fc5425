"""jet_sqla's own tables under Alembic: standalone runs, the schema they build, and a merge into a user's tree."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import coerce_resource_to_filename

from jet_sqla import audit, migrations
from jet_sqla.jobs import tables as _job_tables  # noqa: F401 - the job tables join audit.metadata

JET_TABLES = {'jet_sqla_action_log', 'jet_sqla_job', 'jet_sqla_job_chunk', migrations.VERSION_TABLE}
#: The newest revision shipped.
HEAD = 'jet_sqla_0004'


def schema_differences(engine: sa.Engine, metadata: sa.MetaData) -> list[object]:
    """What Alembic's autogenerate would change to make jet_sqla's tables match ``metadata``."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            'compare_type': True,
            'include_name': lambda name, kind, parent: kind != 'table' or name in audit.metadata.tables,
        })
        return list(compare_metadata(context, metadata))


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


class TestStandalone:
    def test_upgrade_builds_exactly_the_table_audit_defines(self, engine: sa.Engine) -> None:
        assert migrations.current(engine) == ()
        migrations.upgrade(engine)
        assert JET_TABLES <= tables(engine)
        assert migrations.current(engine) == migrations.heads() == (HEAD,)
        assert schema_differences(engine, audit.metadata) == []
        unique = sa.inspect(engine).get_unique_constraints(audit.action_log.name)
        indexes = sa.inspect(engine).get_indexes(audit.action_log.name)
        # MySQL reports a unique constraint as a unique index: either way, the key is unique.
        unique_columns = [c['column_names'] for c in unique] + [i['column_names'] for i in indexes if i['unique']]
        assert ['idempotency_key'] in unique_columns
        assert ['undo_of'] in unique_columns  # a run is undone at most once

    def test_the_comparison_notices_a_drift(self, engine: sa.Engine) -> None:
        """The check above could fail: a table that differs by one column is reported."""
        migrations.upgrade(engine)
        drifted = sa.MetaData()
        table = audit.action_log.to_metadata(drifted)
        for other in audit.metadata.tables.values():
            if other is not audit.action_log:
                other.to_metadata(drifted)
        table.append_column(sa.Column('tenant', sa.String(50)))
        differences = schema_differences(engine, drifted)
        assert [difference[0] for difference in differences] == ['add_column']  # type: ignore[index]

    def test_upgrade_twice_changes_nothing_and_downgrade_removes_the_tables(self, engine: sa.Engine) -> None:
        migrations.upgrade(engine)
        migrations.upgrade(engine)
        assert migrations.current(engine) == (HEAD,)
        migrations.downgrade(engine, 'base')
        assert migrations.current(engine) == ()
        assert audit.action_log.name not in tables(engine)
        assert 'users' in tables(engine)  # the application's own tables are left alone

    def test_own_version_table_leaves_the_users_alembic_version_alone(self, engine: sa.Engine) -> None:
        migrations.upgrade(engine)
        assert 'alembic_version' not in tables(engine)
        with engine.connect() as connection:
            rows = connection.execute(sa.text(f'SELECT version_num FROM {migrations.VERSION_TABLE}')).all()
        assert [row[0] for row in rows] == [HEAD]

    def test_audit_table_works_once_migrated(self, engine: sa.Engine) -> None:
        migrations.upgrade(engine)
        audit.AuditLog(engine).check_ready()  # raises when the table is missing
        big = 'x' * 100_000  # over MySQL's TEXT: the log's long columns must hold it
        entry = audit.AuditEntry(action='a', collection=None, ids=[], params={'note': big}, actor=None,
                                 outcome='error', error='e')
        audit.AuditLog(engine).record_failure(entry)
        with engine.connect() as connection:
            stored = connection.execute(sa.select(audit.action_log.c.params)).scalar_one()
        assert len(stored) > 100_000


class TestScripts:
    def test_branch_label_and_location(self) -> None:
        script = ScriptDirectory.from_config(migrations.config())
        assert script.get_revision(f'{migrations.BRANCH}@head').revision == HEAD  # type: ignore[union-attr]
        location = Path(migrations.script_location())
        assert (location / 'env.py').is_file() and (location / 'script.py.mako').is_file()
        # The version_locations entry users copy resolves, through Alembic itself, to the shipped scripts.
        assert coerce_resource_to_filename(migrations.VERSIONS).resolve() == (location / 'versions').resolve()


USER_ENV = '''
import sqlalchemy as sa
from alembic import context

import jet_sqla.audit

# The user's models, next to jet_sqla's: autogenerate then leaves jet_sqla_action_log alone.
user_metadata = sa.MetaData()
target_metadata = [user_metadata, jet_sqla.audit.metadata]

engine = sa.create_engine(context.config.get_main_option('sqlalchemy.url'), poolclass=sa.pool.NullPool)
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
'''

USER_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = 'shop_0001'
down_revision = None
branch_labels = ('shop',)
depends_on = None


def upgrade():
    op.create_table('widgets', sa.Column('id', sa.Integer, primary_key=True))


def downgrade():
    op.drop_table('widgets')
'''


def user_tree(root: Path, url: str, config_lines: str) -> Path:
    """A user's own Alembic project: alembic.ini, env.py and one revision of theirs."""
    (root / 'alembic' / 'versions').mkdir(parents=True)
    (root / 'alembic' / 'env.py').write_text(USER_ENV)
    (root / 'alembic' / 'versions' / 'shop_0001.py').write_text(USER_REVISION)
    ini = root / 'alembic.ini'
    ini.write_text(textwrap.dedent(f'''\
        [alembic]
        script_location = %(here)s/alembic
        sqlalchemy.url = {url.replace('%', '%%')}
        ''') + textwrap.dedent(config_lines))
    return ini


class TestMergedIntoUsersTree:
    def test_version_locations_with_space_separator(self, engine: sa.Engine, tmp_path: Path) -> None:
        url = engine.url.render_as_string(hide_password=False)
        user_tree(tmp_path, url, '''\
            path_separator = space
            version_locations = %(here)s/alembic/versions jet_sqla.migrations:versions
            ''')
        # As a user runs it: the alembic command, from their project directory.
        result = subprocess.run([sys.executable, '-m', 'alembic', 'upgrade', 'heads'], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert {'widgets', 'jet_sqla_action_log', 'alembic_version'} <= tables(engine)
        assert migrations.VERSION_TABLE not in tables(engine)  # the user's tree records both branches itself
        with engine.connect() as connection:
            versions = {row[0] for row in connection.execute(sa.text('SELECT version_num FROM alembic_version'))}
        assert versions == {'shop_0001', HEAD}
        assert schema_differences(engine, audit.metadata) == []

    def test_one_branch_at_a_time(self, engine: sa.Engine, tmp_path: Path) -> None:
        ini = user_tree(tmp_path, engine.url.render_as_string(hide_password=False), '''\
            path_separator = space
            version_locations = %(here)s/alembic/versions jet_sqla.migrations:versions
            ''')
        config = Config(str(ini))
        command.upgrade(config, f'{migrations.BRANCH}@head')
        assert 'jet_sqla_action_log' in tables(engine) and 'widgets' not in tables(engine)
        command.downgrade(config, f'{migrations.BRANCH}@base')
        assert 'jet_sqla_action_log' not in tables(engine)

    def test_pyproject_list_needs_no_separator(self, engine: sa.Engine, tmp_path: Path) -> None:
        ini = user_tree(tmp_path, engine.url.render_as_string(hide_password=False), '')
        (tmp_path / 'pyproject.toml').write_text(textwrap.dedent('''\
            [tool.alembic]
            version_locations = ["%(here)s/alembic/versions", "jet_sqla.migrations:versions"]
            '''))
        config = Config(str(ini), toml_file=str(tmp_path / 'pyproject.toml'))
        command.upgrade(config, 'heads')
        assert {'widgets', 'jet_sqla_action_log'} <= tables(engine)

    def test_the_os_separator_silently_drops_the_package_entry(self, engine: sa.Engine, tmp_path: Path) -> None:
        """Why the README insists on ``path_separator = space``: on POSIX ``os`` splits on the colon."""
        ini = user_tree(tmp_path, engine.url.render_as_string(hide_password=False), '''\
            path_separator = os
            version_locations = %(here)s/alembic/versions:jet_sqla.migrations:versions
            ''')
        command.upgrade(Config(str(ini)), 'heads')
        assert 'widgets' in tables(engine)
        assert 'jet_sqla_action_log' not in tables(engine)

