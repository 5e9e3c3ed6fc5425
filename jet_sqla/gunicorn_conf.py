"""A gunicorn configuration that gives plain gunicorn jet_sqla's log lines and serving defaults.

Run your app with it::

    gunicorn --config python:jet_sqla.gunicorn_conf 'myapp.jet:app'

Without it, gunicorn configures only its own loggers: the ``action ran`` and
``action failed`` lines of ``jet_sqla.actions`` go nowhere. This module sets
gunicorn's ``logconfig_dict`` to :func:`jet_sqla.logs.logging_config`, so every
record, gunicorn's included, is one structured line on stderr, as under
``jet-sqla serve``. It reads the same environment variables:

- ``JET_SQLA_LOG_FORMAT``: ``kv`` (the default) or ``json``;
- ``JET_SQLA_LOG_LEVEL``: ``info`` by default;
- ``JET_SQLA_ACCESS_LOG=1``: also gunicorn's line per request (off by default, as under ``jet-sqla serve``);
- ``JET_SQLA_WORKERS``, ``JET_SQLA_THREADS``, ``JET_SQLA_WORKER_CLASS``: as ``jet-sqla serve``.

Options given on gunicorn's command line still win over these (``-w 4``).
"""

from __future__ import annotations

import os

from jet_sqla import logs
from jet_sqla.cli.serving import SERVE_DEFAULTS, ServeLogger

_format = os.environ.get('JET_SQLA_LOG_FORMAT', 'kv')
_level = os.environ.get('JET_SQLA_LOG_LEVEL', 'info')
_access_log = os.environ.get('JET_SQLA_ACCESS_LOG', '').strip().lower() in ('1', 'true', 'yes', 'on')

#: Every record, jet_sqla's and gunicorn's, as one key=value or JSON line on stderr.
logconfig_dict = logs.logging_config(_format, _level, _access_log)
loglevel = _level
# As under `jet-sqla serve`: with access lines off, a request does not even gather their details.
logger_class = ServeLogger
# As under `jet-sqla serve`: the server's own tokens never reach a log line, whoever logs them.
logs.hide(part.strip() for part in os.environ.get('JET_SQLA_TOKEN', '').split(','))

# The serving defaults of `jet-sqla serve`, from the one place that decides them (including the worker class).
worker_class = os.environ.get('JET_SQLA_WORKER_CLASS', SERVE_DEFAULTS.worker_class)
workers = int(os.environ.get('JET_SQLA_WORKERS', SERVE_DEFAULTS.workers))
threads = int(os.environ.get('JET_SQLA_THREADS', SERVE_DEFAULTS.threads))
