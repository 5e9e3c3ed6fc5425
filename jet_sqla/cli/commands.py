"""The ``jet-sqla`` command: serve a bridge under gunicorn, run the demo, check a setup, manage jet_sqla's tables.

Every failure a user can cause (a target that does not import, a database
that does not answer, no token) ends the command with one line on stderr and
a non-zero exit code; ``jet-sqla --traceback …`` shows the traceback instead.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import sqlalchemy as sa

# setuptools builds this package from ./migrations (package-dir in pyproject), which mypy cannot follow.
from .. import logs, migrations  # type: ignore[attr-defined]
from ..bridge import Bridge
from ..declaration import Action
from ..messages import GET_ACTION_LIST
from ..options import EnumOptions, ForeignKeyOptions, OptionsSource
from ..search_indexes import missing_search_indexes
from .failures import CommandFailed, guarded, show_tracebacks
from .serving import SERVE_DEFAULTS, check_bind, normalize_bind, serve_app
from .targets import (
    authentication_configured,
    check_sqlite_file,
    load_target,
    make_engine,
    safe_url,
)

__all__ = ['main']

#: The demo's example, served by ``jet-sqla demo``.
DEMO_TARGET = 'jet_sqla.examples.shop.jet:bridge'
DEMO_DATABASE = 'shop.db'

#: Set while ``jet-sqla actions`` imports a target: the module is being inspected, and must not write.
INSPECTING = 'JET_SQLA_INSPECTING'


def _set_environment(token: str | None, insecure: bool) -> None:
    # A module target builds its Bridge at import; the environment is how these options reach it.
    if token:
        os.environ['JET_SQLA_TOKEN'] = token
    if insecure:
        os.environ['JET_SQLA_INSECURE'] = '1'


def _setup_logging(log_format: str, log_level: str, access_log: bool = False, batched: bool = True) -> dict[str, Any]:
    config = logs.configure(log_format, log_level, access_log, batched)
    logs.hide(part.strip() for part in os.environ.get('JET_SQLA_TOKEN', '').split(','))
    return config


def _positive(context: click.Context, parameter: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise click.BadParameter('must be at least 1')
    return value


def _bind(context: click.Context, parameter: click.Parameter, value: str) -> str:
    try:
        return normalize_bind(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _require_target(target: str | None) -> str:
    if not target:
        raise click.UsageError('give a TARGET (module:attribute, or a database URL), or set JET_SQLA_DATABASE_URL')
    return target


def serving_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``serve`` and ``demo`` share."""
    options = [
        click.option('--bind', envvar='JET_SQLA_BIND', default=SERVE_DEFAULTS.bind, show_default=True,
                     callback=_bind,
                     help='HOST:PORT to listen on (comma-separated for several); a bare PORT means '
                          '127.0.0.1:PORT. Env: JET_SQLA_BIND.'),
        click.option('--log-format', envvar='JET_SQLA_LOG_FORMAT', type=click.Choice(logs.FORMATS),
                     default='kv', show_default=True, help='key=value or JSON lines. Env: JET_SQLA_LOG_FORMAT.'),
        click.option('--log-level', envvar='JET_SQLA_LOG_LEVEL', default='info', show_default=True,
                     type=click.Choice(['debug', 'info', 'warning', 'error'], case_sensitive=False),
                     help='Env: JET_SQLA_LOG_LEVEL.'),
        click.option('--access-log/--no-access-log', envvar='JET_SQLA_ACCESS_LOG', default=False, show_default=True,
                     help='Also log a line per HTTP request (at info; about a third more CPU per cheap request). '
                          'Action runs and failures are always logged. Env: JET_SQLA_ACCESS_LOG.'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


#: ``--schema NAME``, repeatable: reflect these schemas too (reflect mode only).
schema_option = click.option('--schema', 'schema', multiple=True, metavar='NAME',
                             help='A schema to reflect besides the default one (repeatable; database URLs only).')


class _OneLineGroup(click.Group):
    """click's group, whose usage errors are one line too (exit code 2), like every other failure."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as error:
            where = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ''
            click.echo(f'Error: {" ".join(error.format_message().split())}{where}', err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo('Aborted!', err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=_OneLineGroup, context_settings={'help_option_names': ['-h', '--help']})
@click.option('--traceback', is_flag=True, help='Show the full traceback of a failure, for debugging.')
@click.version_option(package_name='jet-sqla')
def main(traceback: bool) -> None:
    """Serve the Jet Admin messages protocol for SQLAlchemy models."""
    show_tracebacks(traceback)


@main.command()
@click.argument('target', required=False, envvar='JET_SQLA_DATABASE_URL')
@serving_options
@click.option('--workers', type=int, envvar='JET_SQLA_WORKERS', default=SERVE_DEFAULTS.workers, show_default=True,
              callback=_positive, help='Worker processes. Env: JET_SQLA_WORKERS.')
@click.option('--threads', type=int, envvar='JET_SQLA_THREADS', default=SERVE_DEFAULTS.threads, show_default=True,
              callback=_positive, help='Threads per worker. Env: JET_SQLA_THREADS.')
@click.option('--worker-class', envvar='JET_SQLA_WORKER_CLASS', default=SERVE_DEFAULTS.worker_class,
              show_default=True, help="gunicorn's worker class. Env: JET_SQLA_WORKER_CLASS.")
@click.option('--token', envvar='JET_SQLA_TOKEN', help='Shared token(s), comma-separated. Env: JET_SQLA_TOKEN.')
@click.option('--insecure', is_flag=True, help='Serve with no authentication (local development only).')
@click.option('--allow-empty', is_flag=True,
              help='Serve a reflected database even when it has no table to serve.')
@schema_option
def serve(target: str | None, bind: str, log_format: str, log_level: str, access_log: bool, workers: int,
          threads: int, worker_class: str, token: str | None, insecure: bool, allow_empty: bool = False,
          schema: tuple[str, ...] = ()) -> None:
    """Serve TARGET under gunicorn.

    TARGET is module:attribute naming a Bridge, a falcon.App, a Flask app
    (served as it is), or a function returning one (for example
    myapp.jet:bridge), or a database URL (async ones too), whose every table
    is served by reflection; --schema adds schemas. Without TARGET,
    JET_SQLA_DATABASE_URL is reflected.
    """
    target = _require_target(target)
    _set_environment(token, insecure)
    log_config = _setup_logging(log_format, log_level, access_log)
    loaded = load_target(target, insecure=insecure, schemas=schema, empty='allow' if allow_empty else 'refuse')
    serve_app(loaded, bind=bind, workers=workers, threads=threads, worker_class=worker_class, log_config=log_config)


@main.command()
@serving_options
def demo(bind: str, log_format: str, log_level: str, access_log: bool) -> None:
    """Create and seed the example shop in ./shop.db (SQLite), and serve it with its console."""
    check_bind(bind)  # before anything is created or printed: a busy port ends the demo here
    database = Path.cwd() / DEMO_DATABASE
    existed = database.exists()
    os.environ['JET_SQLA_DATABASE_URL'] = f'sqlite:///{database}'
    os.environ['JET_SQLA_CONSOLE'] = '1'
    token = os.environ.get('JET_SQLA_TOKEN', '').split(',')[0].strip() or secrets.token_urlsafe(24)
    _set_environment(token, insecure=False)
    log_config = _setup_logging(log_format, log_level, access_log)
    loaded = load_target(DEMO_TARGET)
    click.echo(_demo_banner(database, existed, bind, token))
    serve_app(loaded, bind=bind, workers=1, threads=SERVE_DEFAULTS.threads,
              worker_class=SERVE_DEFAULTS.worker_class, log_config=log_config)


def _demo_banner(database: Path, existed: bool, bind: str, token: str) -> str:
    host, _, port = bind.split(',')[0].strip().rpartition(':')
    if host in ('', '0.0.0.0', '[::]'):
        host = '127.0.0.1'  # listening everywhere: this machine is one of the places
    base = f'http://{host}:{port}/api'
    body = '{"name": "get_action_list"}'
    curl = shlex.join([
        'curl', '-s', f'{base}/messages/', '-H', f'Authorization: Bearer {token}',
        '-H', 'Content-Type: application/json', '-d', body,
    ])
    return '\n'.join([
        f'jet_sqla demo: the example shop, {"reused" if existed else "created and seeded"} in {database}',
        '',
        f'  URL      {base}/messages/',
        f'  Token    {token}',
        f'  Console  {base}/console/',
        f'  Health   {base}/health',
        '',
        'Try it:',
        f'  {curl}',
        '',
    ])


# --- Checking a setup -------------------------------------------------------


@main.command()
@click.argument('target', required=False, envvar='JET_SQLA_DATABASE_URL')
@schema_option
def actions(target: str | None, schema: tuple[str, ...] = ()) -> None:
    """List TARGET's collections, their derived option fields, and its actions with their forms.

    It only reads: a SQLite URL whose file does not exist is an error, not a new
    file, and JET_SQLA_INSPECTING=1 tells a module that creates or seeds tables
    at import to skip that.
    """
    target = _require_target(target)
    if not authentication_configured():
        # Nothing is served: a throwaway token only lets the bridge be built.
        os.environ['JET_SQLA_TOKEN'] = secrets.token_urlsafe(24)
    os.environ[INSPECTING] = '1'
    loaded = load_target(target, build_app=False, schemas=schema, empty='warn')
    if not loaded.bridges:
        raise CommandFailed(f'{target} is a falcon.App whose Bridge is in no variable of its module; '
                            'name the Bridge itself (module:bridge)')
    for bridge in loaded.bridges:
        click.echo('\n'.join(describe_bridge(bridge, loaded.description)))


def describe_bridge(bridge: Bridge, title: str) -> Iterator[str]:
    """The readable listing of ``jet-sqla actions``."""
    collections = list(bridge.catalog)
    declared = list(bridge.actions)
    yield f'{title}: {len(collections)} collections, {len(declared)} actions'
    yield ''
    yield 'Collections'
    for collection in collections:
        pk = collection.pk.name if collection.pk is not None else 'composite'
        yield f'  {collection.name}  ({collection.model.__name__}; pk {pk}; label {collection.label.name})'
        for column in collection.table.columns:
            attribute = collection.attribute_name(column)
            source = bridge.options.for_column(collection, attribute)
            if source is not None:
                yield f'    {attribute}: {_describe_source(source)}'
    yield from _describe_search_indexes(bridge)
    yield ''
    yield 'Actions'
    if not declared:
        yield '  (none declared)'
    for action in declared:
        yield from _describe_action(bridge, action)
    handler = bridge.messages.get_handler(GET_ACTION_LIST)
    if handler is not None:
        extra = guarded('calling the get_action_list handler', handler, GET_ACTION_LIST, {}) or []
        for item in extra:
            yield f'  {item.get("name")}  (handler-style)'
    yield ''


def _describe_search_indexes(bridge: Bridge) -> Iterator[str]:
    missing = missing_search_indexes(bridge.engine, bridge.catalog)
    if missing:
        yield ''
        yield 'Search indexes'
    for table in missing:
        yield (f'  {table.collection}: about {table.estimated_rows:,} rows and no trigram index on '
               f'{table.column}, so q searches of its options read the table. Create one:')
        yield f'      {table.statement}'


def _describe_source(source: OptionsSource) -> str:
    if isinstance(source, EnumOptions):
        return 'options from its enum: ' + ', '.join(str(option.value) for option in source.static())
    if isinstance(source, ForeignKeyOptions):
        return f'options from {source.related.name} ({source.value_column.name}, labelled by {source.related.label.name})'
    function = getattr(source, 'function', None)
    return f'options from {getattr(function, "__qualname__", "a custom function")}()'


def _describe_action(bridge: Bridge, action: Action) -> Iterator[str]:
    names = [collection.name for collection in action.collections]
    if not names:
        kind = 'common action'
    elif action.for_instance:
        kind = f'{"bulk " if action.bulk else ""}record action on {", ".join(names)}'
    else:
        kind = f'collection action on {", ".join(names)}'
    flags = [flag for flag, on in (('lock', action.lock), ('allow=…', action.allow is not None)) if on]
    if action.timeout is not None:
        flags.append(f'timeout {action.timeout:g}s')
    yield f'  {action.name}  {kind}{"; " + ", ".join(flags) if flags else ""}'
    if action.description:
        yield f'      {action.description.splitlines()[0]}'
    for form_field in action.form:
        detail = [form_field.field.value, 'required' if form_field.required else 'optional']
        if form_field.related is not None:
            detail.append(f'-> {form_field.related.name}')
        custom = bridge.options.custom('action', action.name, form_field.name)
        source = custom or form_field.options
        if source is not None and form_field.related is None:
            detail.append(_describe_source(source))
        yield f'      {form_field.name}: {", ".join(detail)}'


# --- jet_sqla's own tables --------------------------------------------------


database_url_option = click.option(
    '--database-url', envvar='JET_SQLA_DATABASE_URL', required=True,
    help='The database holding jet_sqla_* tables. Env: JET_SQLA_DATABASE_URL.',
)


@main.group()
def db() -> None:
    """Manage jet_sqla's own tables (jet_sqla_*) with Alembic."""


@contextmanager
def _migrating(database_url: str, *, reading: bool = False) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    if reading:
        check_sqlite_file(engine)  # reading a revision must not create the file it reads
    try:
        yield engine
    finally:
        engine.dispose()


def _revisions(revisions: Sequence[str]) -> str:
    return ', '.join(revisions) if revisions else 'none'


@db.command()
@click.argument('revision', default='heads')
@database_url_option
def upgrade(revision: str, database_url: str) -> None:
    """Create or update jet_sqla's tables, up to REVISION (the newest by default)."""
    _migrate(database_url, 'upgrading', migrations.upgrade, revision)


@db.command()
@click.argument('revision', default='-1')
@database_url_option
def downgrade(revision: str, database_url: str) -> None:
    """Undo jet_sqla's migrations down to REVISION (one step by default; 'base' drops every jet_sqla table)."""
    _migrate(database_url, 'downgrading', migrations.downgrade, revision)


def _migrate(database_url: str, doing: str, step: Callable[..., Any], revision: str) -> None:
    """Run ``step`` to ``revision`` and say which revisions the tables went from and to."""
    with _migrating(database_url) as engine:
        before = guarded(f'reading the revision of {safe_url(engine)}', migrations.current, engine)
        guarded(f'{doing} {safe_url(engine)}', step, engine, revision)
        after = migrations.current(engine)
        click.echo(f'jet_sqla tables of {safe_url(engine)}: {_revisions(before)} -> {_revisions(after)}')


@db.command()
@database_url_option
def current(database_url: str) -> None:
    """Print the revision of jet_sqla's tables, and whether it is the newest."""
    with _migrating(database_url, reading=True) as engine:
        at = guarded(f'reading the revision of {safe_url(engine)}', migrations.current, engine)
        heads = migrations.heads()
        if not at:
            click.echo(f'none: jet_sqla tables are not created; run `jet-sqla db upgrade` (newest: {_revisions(heads)})')
        elif set(at) == set(heads):
            click.echo(f'{_revisions(at)} (newest)')
        else:
            click.echo(f'{_revisions(at)}; newest is {_revisions(heads)}: run `jet-sqla db upgrade`')
