"""The ``jet-sqla`` command line: commands, targets, serving, and how failures are reported."""

from __future__ import annotations

from . import worker as _worker  # noqa: F401 - adds `jet-sqla worker` to main
from .commands import main
from .failures import EXIT_DATABASE, EXIT_SETUP, CommandFailed
from .serving import SERVE_DEFAULTS, GunicornServer, ServeDefaults, serve_app
from .targets import Loaded, load_target

__all__ = [
    'EXIT_DATABASE',
    'EXIT_SETUP',
    'SERVE_DEFAULTS',
    'CommandFailed',
    'GunicornServer',
    'Loaded',
    'ServeDefaults',
    'load_target',
    'main',
    'serve_app',
]
