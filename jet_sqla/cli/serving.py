"""Serving with gunicorn, driven as a library: the defaults, the checks before starting, the server."""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from ..bridge import Bridge
from .failures import CommandFailed
from .targets import Loaded, check_databases
from .wire_errors import install as refuse_in_json

__all__ = [
    'SERVE_DEFAULTS',
    'GunicornServer',
    'ServeDefaults',
    'ServeLogger',
    'check_bind',
    'normalize_bind',
    'raise_open_files_limit',
    'serve_app',
]


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
#: The worker class is gthread's, with requests read on the event loop before a thread sees them:
#: plain gthread lets one idle socket hold a thread forever (slowloris; see jet_sqla.workers).
SERVE_DEFAULTS = ServeDefaults(workers=max(2, _cores()), threads=8,
                               worker_class='jet_sqla.workers.BufferingWorker', bind='127.0.0.1:8000')


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft limit of open files to its hard limit; returns ``(soft, hard)``.

    Each connection, idle or not, is a file descriptor: the common soft limit of
    1,024 would cap a worker below the 1,000 connections gunicorn lets it hold.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft, hard


def normalize_bind(bind: str) -> str:
    """``--bind`` as gunicorn takes it: a bare port becomes ``127.0.0.1:PORT``; every port is checked.

    Raises:
        ValueError: an address is not ``HOST:PORT`` (or ``unix:PATH``, ``fd://N``), or its port is out of range.
    """
    addresses = []
    for address in (part.strip() for part in bind.split(',')):
        if not address:
            continue
        if address.startswith(('unix:', 'fd://')):
            addresses.append(address)
            continue
        if address.isdigit():
            address = f'127.0.0.1:{address}'  # loopback, as the default: listening everywhere must be asked for
        host, separator, port = address.rpartition(':')
        if not separator or not port.isdigit() or not host.strip('[]'):
            raise ValueError(f'{address!r}: expected HOST:PORT (or a bare PORT, for 127.0.0.1:PORT)')
        if not 0 <= int(port) <= 65535:
            raise ValueError(f'{address!r}: the port must be between 0 and 65535')
        addresses.append(address)
    if not addresses:
        raise ValueError('expected HOST:PORT')
    return ','.join(addresses)


def check_bind(bind: str) -> None:
    """Fail with one line, instead of gunicorn's retries, when an address cannot be listened on."""
    for address in normalize_bind(bind).split(','):
        if address.startswith(('unix:', 'fd://')):
            continue
        host, _, port = address.rpartition(':')
        host = host.strip('[]')
        family = socket.AF_INET6 if ':' in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn itself binds
                probe.bind((host, int(port)))
        except OSError as error:
            raise CommandFailed(f'cannot listen on {address}: {error.strerror or error}; '
                                'choose another address with --bind HOST:PORT') from None


class ServeLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger, which builds an access record only when one will be written.

    Given a ``logconfig_dict``, gunicorn builds every request's access atoms
    (headers, times, sizes) before the ``gunicorn.access`` logger's level is
    consulted. Here the level is consulted once, after each setup, and a request
    costs nothing when access lines are off (``--access-log`` turns them on).
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self._writes_access = logging.getLogger('gunicorn.access').isEnabledFor(logging.INFO)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        if getattr(self, '_writes_access', True):
            super().access(resp, req, environ, request_time)


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, driven as a library, serving an app loaded once in the master (preloaded).

    Args:
        app: The WSGI app.
        settings: gunicorn settings by name (``bind``, ``workers``…).
        engines: Disposed in each worker after the fork, so that no pooled
            connection is shared between processes.
    """

    def __init__(self, app: Any, settings: dict[str, Any], engines: Sequence[sa.Engine]) -> None:
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

    def load(self) -> Any:
        return self.application


def _engines_in_process(bridges: Sequence[Bridge]) -> list[sa.Engine]:
    # Every engine the target built, wherever it keeps it: none of their pooled
    # connections may cross the fork, not only the bridges' own.
    engines = {id(bridge.engine): bridge.engine for bridge in bridges if getattr(bridge, 'engine', None) is not None}
    engines.update((id(value), value) for value in gc.get_objects() if isinstance(value, sa.Engine))
    return list(engines.values())


def check_worker_class(name: str) -> None:
    """Fail with one line, instead of gunicorn's traceback, when the worker class cannot be loaded."""
    try:
        gunicorn_util.load_class(name, default='gthread', section='gunicorn.workers')
    except RuntimeError:
        raise CommandFailed(
            f'--worker-class {name!r} cannot be loaded: use jet_sqla.workers.BufferingWorker, sync or gthread, '
            'or a class whose package is installed (gevent, eventlet, or module.Class)'
        ) from None


def serve_app(loaded: Loaded, *, bind: str, workers: int, threads: int, worker_class: str,
              log_config: dict[str, Any]) -> None:
    """Serve ``loaded`` with gunicorn until it is stopped."""
    assert loaded.app is not None, 'load_target(build_app=True) builds the app'
    check_worker_class(worker_class)
    check_bind(bind)
    raise_open_files_limit()
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
        'logger_class': ServeLogger,
        'proc_name': 'jet-sqla',
    }
    refuse_in_json()  # gunicorn's own 4xx pages (a header too long…) are HTML otherwise
    GunicornServer(loaded.app, settings, engines).run()
