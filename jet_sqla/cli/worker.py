"""``jet-sqla worker TARGET``: a Celery worker that runs a bridge's background chunks.

Start any number of them, on any number of machines, sharing the broker and
the database. Each also sweeps for jobs recorded but never published.
"""

from __future__ import annotations

import os
import secrets

import click

from .. import logs
from .commands import _positive, _setup_logging, main
from .failures import CommandFailed, guarded
from .targets import check_databases, load_target

__all__ = ['worker']


@main.command()
@click.argument('target', required=False, envvar='JET_SQLA_TARGET')
@click.option('--concurrency', type=int, default=2, show_default=True, callback=_positive,
              help='Worker processes, each running one chunk at a time.')
@click.option('--log-format', envvar='JET_SQLA_LOG_FORMAT', type=click.Choice(logs.FORMATS), default='kv',
              show_default=True, help='key=value or JSON lines. Env: JET_SQLA_LOG_FORMAT.')
@click.option('--log-level', envvar='JET_SQLA_LOG_LEVEL', default='info', show_default=True,
              type=click.Choice(['debug', 'info', 'warning', 'error'], case_sensitive=False),
              help='Env: JET_SQLA_LOG_LEVEL.')
def worker(target: str | None, concurrency: int, log_format: str, log_level: str) -> None:
    """Run TARGET's background actions on Celery.

    TARGET is module:attribute naming the Bridge, or the Flask app (or app
    factory) it is mounted on; a Flask-SQLAlchemy bridge needs the app.

    The broker is the Bridge's broker=, or JET_SQLA_BROKER_URL.
    """
    if not target:
        raise CommandFailed('give a TARGET (module:attribute naming a Bridge), or set JET_SQLA_TARGET')
    if not (os.environ.get('JET_SQLA_TOKEN', '').strip(' ,') or os.environ.get('JET_SQLA_JWT_PUBLIC_KEY')
            or os.environ.get('JET_SQLA_INSECURE') == '1'):
        # A worker serves nothing: a throwaway token only lets the bridge be built.
        os.environ['JET_SQLA_TOKEN'] = secrets.token_urlsafe(24)
    # Each line at once: Celery's pool processes end without Python's exit handlers, which would
    # have written a batch still queued.
    _setup_logging(log_format, log_level, batched=False)
    loaded = load_target(target, build_app=False)
    bridges = [bridge for bridge in loaded.bridges if getattr(bridge, 'jobs', None) is not None and bridge.jobs.broker]
    if not bridges and any(getattr(bridge, 'flask_db', None) is not None and getattr(bridge, 'jobs', None) is None
                           for bridge in loaded.bridges):
        # Built from db.Model: its database comes from the Flask app, at init_app, which nothing called here.
        raise CommandFailed(
            f'{target} is a Flask-SQLAlchemy bridge, which gets its database from the Flask app: '
            'give the app or its factory instead (module:app or module:create_app, calling bridge.init_app(app))'
        )
    if not bridges:
        raise CommandFailed(f'{target} has no broker: pass broker= to its Bridge, or set JET_SQLA_BROKER_URL')
    if len(bridges) > 1:
        raise CommandFailed(f'{target} holds {len(bridges)} bridges with a broker; name one (module:bridge)')
    bridge = bridges[0]
    check_databases([bridge])
    guarded('checking the job tables', bridge.jobs.check_ready)
    app = bridge.jobs.celery()
    bridge.engine.dispose()  # the pool processes open their own connections
    app.worker_main([
        'worker', f'--concurrency={concurrency}', f'--queues={bridge.jobs.queue}', f'--loglevel={log_level.upper()}',
        f'--hostname=jet-sqla-{os.getpid()}@%h', '--without-gossip', '--without-mingle',
    ])
