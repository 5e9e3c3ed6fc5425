"""The ``jet-sqla`` command: serve a bridge under gunicorn, run the demo, check a setup, manage jet_sqla's tables.

Every failure a user can cause (a target that does not import, a database
that does not answer, no token) ends the command with one line on stderr and
a non-zero exit code; ``jet-sqla --traceback …`` shows the traceback instead.
"""

from __future__ import annotations

import gc
import importlib
import os
import secrets
import shlex
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, ParamSpec, TypeVar

import click
import falcon
import sqlalchemy as sa
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from . import logs
# setuptools builds this package from ./migrations (package-dir in pyproject), which mypy cannot follow.
from . import migrations  # type: ignore[attr-defined]
from .actions import Action
from .bridge import Bridge
from .messages import GET_ACTION_LIST
from .options import EnumOptions, ForeignKeyOptions, OptionsSource

__all__ = ['SERVE_DEFAULTS', 'Loaded', 'ServeDefaults', 'load_target', 'main']

P = ParamSpec('P')
T = TypeVar('T')

#: The demo's example, served by ``jet-sqla demo``.
DEMO_TARGET = 'jet_sqla.examples.shop.jet:bridge'
DEMO_DATABASE = 'shop.db'
#: What a bare ``module`` target is looked up as, in this order.
DEFAULT_ATTRIBUTES = ('bridge', 'app')
#: ``EXIT_DATABASE`` tells a deploy script "try again later" apart from "fix the setup".
EXIT_SETUP = 1
EXIT_DATABASE = 3


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use, as in a container
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class ServeDefaults(NamedTuple):
    """How ``serve`` runs when nothing says otherwise."""

    workers: int
    threads: int
    worker_class: str
    bind: str


#: The one place that decides the serving defaults, from BENCHMARKS.md: one gthread worker per
#: core (at least 2) of 8 threads each. Threads let slow actions run beside the cheap messages
#: without starving them; more processes than cores cost 7-15% more CPU per request, and 8
#: threads cost nothing measurable over 4 while leaving twice the room for slow actions.
SERVE_DEFAULTS = ServeDefaults(workers=max(2, _cores()), threads=8, worker_class='gthread', bind='127.0.0.1:8000')


class CommandFailed(click.ClickException):
    """One line on stderr, and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_SETUP) -> None:
        super().__init__(_one_line(message))
        # click declares exit_code a ClassVar but reads it from the instance, so a per-instance value works.
        self.exit_code = exit_code  # type: ignore[misc]


def _one_line(text: str, limit: int = 500) -> str:
    line = ' '.join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + '…'


# --- Loading a target -------------------------------------------------------


@dataclass
class Loaded:
    """What a target resolved to.

    Attributes:
        app: The WSGI app to serve; ``None`` when it was not asked for.
        bridges: The bridges behind it, for their engines and their actions.
        description: How to name it to the user.
    """

    app: falcon.App[Any, Any] | None
    bridges: list[Bridge] = field(default_factory=list)
    description: str = ''


def is_database_url(target: str) -> bool:
    """A ``scheme://…`` URL (reflect mode), rather than ``module:attribute``."""
    return '://' in target


def load_target(target: str, *, insecure: bool = False, build_app: bool = True) -> Loaded:
    """Resolve ``module:attribute`` (a Bridge, a falcon.App, or a function returning one) or a database URL.

    Args:
        target: What to serve.
        insecure: For a database URL, serve it with no authentication.
        build_app: Build the WSGI app of a Bridge (``False`` when only its actions are listed).

    Raises:
        CommandFailed: the target cannot be imported or reflected; the message says why.
    """
    if is_database_url(target):
        return _reflect(target, insecure=insecure, build_app=build_app)
    module, attribute, value = _import_target(target)
    if callable(value) and not isinstance(value, (Bridge, falcon.App)) and not isinstance(value, type):
        value = _guarded(f'calling {target}', value)
    if isinstance(value, Bridge):
        app = _guarded(f'loading {target}', value.wsgi_app) if build_app else None
        return Loaded(app, [value], target)
    if isinstance(value, falcon.App):
        return Loaded(value, _bridges_behind(module), target)
    raise CommandFailed(
        f'{module.__name__}:{attribute} is a {type(value).__name__}; '
        'expected a Bridge, a falcon.App, or a function returning one'
    )


def _import_target(target: str) -> tuple[ModuleType, str, Any]:
    module_name, _, attribute = target.partition(':')
    attribute = attribute.removesuffix('()')
    if not module_name or not module_name.replace('.', '').replace('_', '').isalnum():
        raise CommandFailed(f'{target!r} is neither module:attribute nor a database URL (scheme://…)')
    # As with gunicorn: the current directory's modules are importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = _guarded(f'importing {module_name}', importlib.import_module, module_name)
    names = [attribute] if attribute else list(DEFAULT_ATTRIBUTES)
    for name in names:
        if hasattr(module, name):
            return module, name, getattr(module, name)
    raise CommandFailed(f'module {module_name!r} has no attribute {" or ".join(map(repr, names))}')


def _bridges_behind(module: ModuleType) -> list[Bridge]:
    """The bridges a falcon.App target serves, as far as can be told: those its module holds."""
    found = [value for value in vars(module).values() if isinstance(value, Bridge)]
    return list({id(bridge): bridge for bridge in found}.values())


def _reflect(url: str, *, insecure: bool, build_app: bool) -> Loaded:
    if not insecure and not _authentication_configured():
        raise CommandFailed(
            'no authentication is configured: pass --token (or set JET_SQLA_TOKEN), or set '
            'JET_SQLA_JWT_PUBLIC_KEY and JET_SQLA_PROJECT; --insecure serves with none, for local use only'
        )
    engine = make_engine(url)
    bridge = _guarded(f'reflecting {_safe_url(engine)}', Bridge.reflect, engine, insecure=insecure)
    app = _guarded('building the app', bridge.wsgi_app) if build_app else None
    return Loaded(app, [bridge], f'every table of {_safe_url(engine)}')


def _authentication_configured() -> bool:
    return bool(os.environ.get('JET_SQLA_TOKEN', '').strip(' ,') or os.environ.get('JET_SQLA_JWT_PUBLIC_KEY'))


def make_engine(url: str) -> sa.Engine:
    """An engine that gives up connecting after 10 seconds, instead of hanging on an unreachable host.

    Raises:
        CommandFailed: the URL is malformed, or its driver is not installed.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise CommandFailed(f'{url.split("@")[-1]!r} is not a database URL') from None
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() in ('postgresql', 'mysql', 'mariadb'):
        connect_args['connect_timeout'] = 10
    return _guarded(f'using {parsed.render_as_string(hide_password=True)}', sa.create_engine, parsed,
                    pool_pre_ping=True, connect_args=connect_args)


def _safe_url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


_traceback = False


def _guarded(doing: str, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``function``; any failure becomes one line that says what was being done."""
    try:
        return function(*args, **kwargs)
    except (click.ClickException, KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:
        if _traceback:
            raise
        raise _failure(doing, error) from None


def _failure(doing: str, error: BaseException) -> CommandFailed:
    if isinstance(error, sa.exc.DBAPIError):
        reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
        return CommandFailed(f'{doing}: the database did not answer: {reason}', EXIT_DATABASE)
    if isinstance(error, (RuntimeError, ValueError)):
        return CommandFailed(f'{doing}: {error}')
    return CommandFailed(f'{doing}: {type(error).__name__}: {error}')


def check_databases(bridges: Sequence[Bridge]) -> None:
    """Fail now, not on the first request, when a bridge's database does not answer."""
    for bridge in bridges:
        _guarded(f'connecting to {_safe_url(bridge.engine)}', _ping, bridge.engine)


def _ping(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        connection.execute(sa.text('SELECT 1'))


def check_bind(bind: str) -> None:
    """Fail with one line, instead of gunicorn's retries, when an address cannot be listened on."""
    for address in (part.strip() for part in bind.split(',')):
        if not address or address.startswith(('unix:', 'fd://')):
            continue
        host, separator, port = address.rpartition(':')
        if not separator:
            host, port = address, '8000'  # gunicorn's default port
        if not port.isdigit():
            raise CommandFailed(f'--bind {address!r}: expected HOST:PORT')
        host = host.strip('[]') or '0.0.0.0'
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn itself binds
                probe.bind((host, int(port)))
        except OSError as error:
            raise CommandFailed(f'cannot listen on {address}: {error.strerror or error}') from None


# --- Serving ----------------------------------------------------------------


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, driven as a library, serving an app loaded once in the master (preloaded).

    Args:
        app: The WSGI app.
        settings: gunicorn settings by name (``bind``, ``workers``…).
        engines: Disposed in each worker after the fork, so that no pooled
            connection is shared between processes.
    """

    def __init__(self, app: falcon.App[Any, Any], settings: dict[str, Any], engines: Sequence[sa.Engine]) -> None:
        self.application = app
        self.settings = settings
        self.engines = list(engines)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.settings.items():
            self.cfg.set(key, value)
        if 'control_socket_disable' in self.cfg.settings:
            # gunicorn 24+ opens one control socket per user by default: two servers would fight over it.
            self.cfg.set('control_socket_disable', True)
        engines = self.engines

        def post_fork(server: Any, worker: Any) -> None:
            # The worker opens its own connections; the master's stay the master's (close=False).
            for engine in engines:
                engine.dispose(close=False)

        self.cfg.set('post_fork', post_fork)

    def load(self) -> falcon.App[Any, Any]:
        return self.application


def _engines_in_process(bridges: Sequence[Bridge]) -> list[sa.Engine]:
    # Every engine the target built, wherever it keeps it: none of their pooled
    # connections may cross the fork, not only the bridges' own.
    engines = {id(bridge.engine): bridge.engine for bridge in bridges}
    engines.update((id(value), value) for value in gc.get_objects() if isinstance(value, sa.Engine))
    return list(engines.values())


def check_worker_class(name: str) -> None:
    """Fail with one line, instead of gunicorn's traceback, when the worker class cannot be loaded."""
    try:
        gunicorn_util.load_class(name, default='gthread', section='gunicorn.workers')
    except RuntimeError:
        raise CommandFailed(
            f'--worker-class {name!r} cannot be loaded: use sync or gthread, '
            'or a class whose package is installed (gevent, eventlet, or module.Class)'
        ) from None


def serve_app(loaded: Loaded, *, bind: str, workers: int, threads: int, worker_class: str,
              log_config: dict[str, Any]) -> None:
    """Serve ``loaded`` with gunicorn until it is stopped."""
    assert loaded.app is not None, 'load_target(build_app=True) builds the app'
    check_worker_class(worker_class)
    check_bind(bind)
    check_databases(loaded.bridges)
    engines = _engines_in_process(loaded.bridges)
    for engine in engines:
        engine.dispose()  # the master serves nothing: it keeps no connection open
    settings = {
        'bind': [part.strip() for part in bind.split(',') if part.strip()],
        'workers': workers,
        'threads': threads,
        'worker_class': worker_class,
        'preload_app': True,
        'logconfig_dict': log_config,
        'proc_name': 'jet-sqla',
    }
    GunicornServer(loaded.app, settings, engines).run()


def _set_environment(token: str | None, insecure: bool) -> None:
    # A module target builds its Bridge at import; the environment is how these options reach it.
    if token:
        os.environ['JET_SQLA_TOKEN'] = token
    if insecure:
        os.environ['JET_SQLA_INSECURE'] = '1'


def _setup_logging(log_format: str, log_level: str) -> dict[str, Any]:
    config = logs.configure(log_format, log_level)
    logs.hide(part.strip() for part in os.environ.get('JET_SQLA_TOKEN', '').split(','))
    return config


def _positive(context: click.Context, parameter: click.Parameter, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise click.BadParameter('must be at least 1')
    return value


def serving_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``serve`` and ``demo`` share."""
    options = [
        click.option('--bind', envvar='JET_SQLA_BIND', default=SERVE_DEFAULTS.bind, show_default=True,
                     help='HOST:PORT to listen on (comma-separated for several). Env: JET_SQLA_BIND.'),
        click.option('--log-format', envvar='JET_SQLA_LOG_FORMAT', type=click.Choice(logs.FORMATS),
                     default='kv', show_default=True, help='key=value or JSON lines. Env: JET_SQLA_LOG_FORMAT.'),
        click.option('--log-level', envvar='JET_SQLA_LOG_LEVEL', default='info', show_default=True,
                     type=click.Choice(['debug', 'info', 'warning', 'error'], case_sensitive=False),
                     help='Env: JET_SQLA_LOG_LEVEL.'),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.option('--traceback', is_flag=True, help='Show the full traceback of a failure, for debugging.')
@click.version_option(package_name='jet-sqla')
def main(traceback: bool) -> None:
    """Serve the Jet Admin messages protocol for SQLAlchemy models."""
    global _traceback
    _traceback = traceback


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
def serve(target: str | None, bind: str, log_format: str, log_level: str, workers: int, threads: int,
          worker_class: str, token: str | None, insecure: bool) -> None:
    """Serve TARGET under gunicorn.

    TARGET is module:attribute naming a Bridge, a falcon.App, or a function
    returning one (``myapp.jet:bridge``), or a database URL, whose every table
    is served by reflection. Without TARGET, JET_SQLA_DATABASE_URL is reflected.
    """
    if not target:
        raise CommandFailed('give a TARGET (module:attribute, or a database URL), or set JET_SQLA_DATABASE_URL')
    _set_environment(token, insecure)
    log_config = _setup_logging(log_format, log_level)
    loaded = load_target(target, insecure=insecure)
    serve_app(loaded, bind=bind, workers=workers, threads=threads, worker_class=worker_class, log_config=log_config)


@main.command()
@serving_options
def demo(bind: str, log_format: str, log_level: str) -> None:
    """Create and seed the example shop in ./shop.db (SQLite), and serve it with its console."""
    database = Path.cwd() / DEMO_DATABASE
    existed = database.exists()
    os.environ['JET_SQLA_DATABASE_URL'] = f'sqlite:///{database}'
    os.environ['JET_SQLA_CONSOLE'] = '1'
    token = os.environ.get('JET_SQLA_TOKEN', '').split(',')[0].strip() or secrets.token_urlsafe(24)
    _set_environment(token, insecure=False)
    log_config = _setup_logging(log_format, log_level)
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
def actions(target: str | None) -> None:
    """List TARGET's collections, their derived option fields, and its actions with their forms."""
    if not target:
        raise CommandFailed('give a TARGET (module:attribute, or a database URL), or set JET_SQLA_DATABASE_URL')
    if not _authentication_configured():
        # Nothing is served: a throwaway token only lets the bridge be built.
        os.environ['JET_SQLA_TOKEN'] = secrets.token_urlsafe(24)
    loaded = load_target(target, build_app=False)
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
            source = bridge.options.for_column(collection, column.key)
            if source is not None:
                yield f'    {column.key}: {_describe_source(source)}'
    yield ''
    yield 'Actions'
    if not declared:
        yield '  (none declared)'
    for action in declared:
        yield from _describe_action(bridge, action)
    handler = bridge.messages.get_handler(GET_ACTION_LIST)
    if handler is not None:
        extra = _guarded('calling the get_action_list handler', handler, GET_ACTION_LIST, {}) or []
        for item in extra:
            yield f'  {item.get("name")}  (handler-style)'
    yield ''


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
def _migrating(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
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
        before = _guarded(f'reading the revision of {_safe_url(engine)}', migrations.current, engine)
        _guarded(f'{doing} {_safe_url(engine)}', step, engine, revision)
        after = migrations.current(engine)
        click.echo(f'jet_sqla tables of {_safe_url(engine)}: {_revisions(before)} -> {_revisions(after)}')


@db.command()
@database_url_option
def current(database_url: str) -> None:
    """Print the revision of jet_sqla's tables, and whether it is the newest."""
    with _migrating(database_url) as engine:
        at = _guarded(f'reading the revision of {_safe_url(engine)}', migrations.current, engine)
        heads = migrations.heads()
        if not at:
            click.echo(f'none: jet_sqla tables are not created; run `jet-sqla db upgrade` (newest: {_revisions(heads)})')
        elif set(at) == set(heads):
            click.echo(f'{_revisions(at)} (newest)')
        else:
            click.echo(f'{_revisions(at)}; newest is {_revisions(heads)}: run `jet-sqla db upgrade`')


if __name__ == '__main__':  # pragma: no cover
    main()
