"""How the ``jet-sqla`` command fails: one line on stderr and an exit code, never a traceback.

``jet-sqla --traceback …`` shows the traceback instead, for debugging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click
import sqlalchemy as sa

__all__ = ['EXIT_DATABASE', 'EXIT_SETUP', 'CommandFailed', 'guarded', 'show_tracebacks']

P = ParamSpec('P')
T = TypeVar('T')

#: ``EXIT_DATABASE`` tells a deploy script "try again later" apart from "fix the setup".
EXIT_SETUP = 1
EXIT_DATABASE = 3


class CommandFailed(click.ClickException):
    """One line on stderr, and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_SETUP) -> None:
        super().__init__(_one_line(message))
        # click declares exit_code a ClassVar but reads it from the instance, so a per-instance value works.
        self.exit_code = exit_code  # type: ignore[misc]


def _one_line(text: str, limit: int = 500) -> str:
    line = ' '.join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + '…'


_traceback = False


def show_tracebacks(on: bool) -> None:
    """``--traceback``: let failures raise with their traceback instead of one line."""
    global _traceback
    _traceback = on


def guarded(doing: str, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
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
