"""What ``jet-sqla`` serves or inspects: a ``module:attribute`` target, or a database URL to reflect."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import click
import falcon
import sqlalchemy as sa

from ..bridge import Bridge
from ..database import pool_options
from ..integrations.async_engines import sync_url
from ..integrations.mounting import framework_of
from .failures import CommandFailed, guarded, guarded_import

__all__ = ['DEFAULT_ATTRIBUTES', 'Loaded', 'authentication_configured', 'check_databases', 'is_database_url',
           'load_target', 'make_engine', 'safe_url']

#: What a bare ``module`` target is looked up as, in this order.
DEFAULT_ATTRIBUTES = ('bridge', 'app')


@dataclass
class Loaded:
    """What a target resolved to.

    Attributes:
        app: The WSGI app to serve (a falcon.App, or a Flask app as it is); ``None`` when it was not asked for.
        bridges: The bridges behind it, for their engines and their actions.
        description: How to name it to the user.
    """

    app: Any
    bridges: list[Bridge] = field(default_factory=list)
    description: str = ''


def is_database_url(target: str) -> bool:
    """A ``scheme://…`` URL (reflect mode), rather than ``module:attribute``."""
    return '://' in target


#: What to do when a reflected database has nothing to serve: refuse (``serve``) or warn (``actions``).
EmptyDatabase = Literal['refuse', 'warn', 'allow']


def load_target(target: str, *, insecure: bool = False, build_app: bool = True,
                schemas: Sequence[str] = (), empty: EmptyDatabase = 'refuse') -> Loaded:
    """Resolve ``module:attribute`` (a Bridge, a falcon.App, a Flask app, or a function returning one) or a
    database URL.

    Args:
        target: What to serve.
        insecure: For a database URL, serve it with no authentication.
        build_app: Build the WSGI app of a Bridge (``False`` when only its actions are listed).
        schemas: For a database URL, schemas to reflect besides the default one.
        empty: For a database URL with no table to serve: refuse it, warn on stderr, or allow it.

    Raises:
        CommandFailed: the target cannot be imported or reflected, or is an ASGI app; the message says why.
    """
    if is_database_url(target):
        return _reflect(target, insecure=insecure, build_app=build_app, schemas=schemas, empty=empty)
    module, attribute, value = _import_target(target)
    factory = False
    if (callable(value) and not isinstance(value, (Bridge, falcon.App)) and not isinstance(value, type)
            and framework_of(value) is None and not _is_asgi(value)):
        value = guarded(f'calling {target}', value)
        factory = True
    if framework_of(value) == 'flask':
        # A WSGI app of its own (bridge.init_app(app) joined it): served as it is.
        mounted = list(getattr(value, 'extensions', {}).get('jet_sqla', []))
        return Loaded(value, mounted or _bridges_behind(module), target)
    if framework_of(value) in ('starlette', 'falcon-asgi') or _is_asgi(value):
        raise CommandFailed(
            f'{target} is an ASGI app, which gunicorn\'s WSGI workers cannot serve; '
            # A factory needs uvicorn's --factory: without it uvicorn warns, or serves the function itself.
            f'run it with uvicorn instead: uvicorn {"--factory " if factory else ""}{module.__name__}:{attribute}'
        )
    if isinstance(value, Bridge):
        app = guarded(f'loading {target}', value.wsgi_app) if build_app else None
        return Loaded(app, [value], target)
    if isinstance(value, falcon.App):
        return Loaded(value, _bridges_behind(module), target)
    what, advice = describe_value(value)
    raise CommandFailed(
        f'{module.__name__}:{attribute} is {what}; expected a Bridge, a falcon.App, '
        f'or a function returning one{": " + advice if advice else ""}'
    )


def describe_value(value: Any) -> tuple[str, str]:
    """What a target's attribute is, in its author's words ("a model class", not a metaclass's name), and what to do."""
    named = 'pass it to Bridge(…) and name the Bridge'
    if inspect.isclass(value):
        if isinstance(sa.inspect(value, raiseerr=False), sa.orm.Mapper):
            return f'a model class ({value.__name__})', 'pass its declarative base to Bridge(…) and name the Bridge'
        if isinstance(getattr(value, 'registry', None), sa.orm.registry):
            return f'a declarative base ({value.__name__})', named
        return f'the class {value.__name__}', ''
    if isinstance(value, ModuleType):
        return f'a module ({value.__name__})', ''
    if isinstance(value, sa.MetaData):
        return 'a MetaData', named
    if isinstance(value, sa.Engine):
        return 'an engine', 'pass it to Bridge(…, engine=…) and name the Bridge'
    if value is None:
        return 'None', ''
    name = type(value).__name__
    return f'{"an" if name[:1].lower() in "aeiou" else "a"} {name}', ''



def _import_target(target: str) -> tuple[ModuleType, str, Any]:
    module_name, _, attribute = target.partition(':')
    attribute = attribute.removesuffix('()')
    if not module_name or not module_name.replace('.', '').replace('_', '').isalnum():
        raise CommandFailed(f'{target!r} is neither module:attribute nor a database URL (scheme://…)')
    # As with gunicorn: the current directory's modules are importable.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = guarded_import(module_name, importlib.import_module)
    names = [attribute] if attribute else list(DEFAULT_ATTRIBUTES)
    for name in names:
        if hasattr(module, name):
            return module, name, getattr(module, name)
    raise CommandFailed(f'module {module_name!r} has no attribute {" or ".join(map(repr, names))}')


def _is_asgi(value: Any) -> bool:
    """An ASGI app: ``async def app(scope, receive, send)``, or an object whose ``__call__`` is one."""
    if not callable(value):
        return False
    call = value if inspect.isroutine(value) else type(value).__call__
    return inspect.iscoroutinefunction(call) and len(inspect.signature(value).parameters) == 3


def _bridges_behind(module: ModuleType) -> list[Bridge]:
    """The bridges a falcon.App target serves, as far as can be told: those its module holds."""
    found = [value for value in vars(module).values() if isinstance(value, Bridge)]
    return list({id(bridge): bridge for bridge in found}.values())


def _reflect(url: str, *, insecure: bool, build_app: bool, schemas: Sequence[str] = (),
             empty: EmptyDatabase = 'refuse') -> Loaded:
    if not insecure and not authentication_configured():
        raise CommandFailed(
            'no authentication is configured: pass --token (or set JET_SQLA_TOKEN), or set '
            'JET_SQLA_JWT_PUBLIC_KEY and JET_SQLA_PROJECT; --insecure serves with none, for local use only'
        )
    engine = make_engine(url)
    check_sqlite_file(engine)
    bridge = guarded(f'reflecting {safe_url(engine)}', Bridge.reflect, engine, insecure=insecure,
                     schemas=[None, *dict.fromkeys(schemas)])
    if not list(bridge.catalog) and empty != 'allow':
        problem = (f'{safe_url(engine)} has no table to serve (no tables at all, or none with a primary key); '
                   'is it the right database?')
        if empty == 'refuse':
            raise CommandFailed(f'{problem} Pass --allow-empty to serve it anyway')
        click.echo(f'Warning: {problem}', err=True)
    app = guarded('building the app', bridge.wsgi_app) if build_app else None
    return Loaded(app, [bridge], f'every table of {safe_url(engine)}')


def check_sqlite_file(engine: sa.Engine) -> None:
    """Refuse a SQLite URL whose file does not exist, before anything opens it: opening would create it.

    A typo (``sqlite:///emtpy.db``) must not leave an empty file behind and serve nothing.
    In-memory databases and ``file:`` URIs are left to SQLite.
    """
    url = engine.url
    if url.get_backend_name() != 'sqlite':
        return
    database = url.database or ''
    if database in ('', ':memory:') or database.startswith('file:') or url.query.get('uri'):
        return
    path = Path(database)
    if path.exists():
        return
    shown = safe_url(engine)
    if not path.parent.exists():
        raise CommandFailed(f'{shown}: the directory {str(path.parent)!r} does not exist')
    raise CommandFailed(f'{shown}: no such file ({path.resolve()}); reflecting never creates a database. '
                        'sqlite:///name.db is relative to the current directory, sqlite:////abs/path.db absolute')


def authentication_configured() -> bool:
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
    # An async URL (postgresql+asyncpg://…) is served through the matching sync driver.
    parsed = guarded(f'using {parsed.render_as_string(hide_password=True)}', sync_url, parsed)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() in ('postgresql', 'mysql', 'mariadb'):
        connect_args['connect_timeout'] = 10
    options: dict[str, Any] = {'pool_pre_ping': True, 'connect_args': connect_args, **pool_options(parsed)}

    def create() -> sa.Engine:
        return sa.create_engine(parsed, **options)

    return guarded(f'using {parsed.render_as_string(hide_password=True)}', create)


def safe_url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def check_databases(bridges: Sequence[Bridge]) -> None:
    """Fail now, not on the first request, when a bridge's database does not answer."""
    for bridge in bridges:
        if getattr(bridge, 'engine', None) is None:
            continue  # a Flask-SQLAlchemy bridge not joined to an app yet: its app has no database either
        guarded(f'connecting to {safe_url(bridge.engine)}', _ping, bridge.engine)


def _ping(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        connection.execute(sa.text('SELECT 1'))
