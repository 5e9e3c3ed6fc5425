"""How the ``jet-sqla`` command fails: one line on stderr and an exit code, never a traceback.

``jet-sqla --traceback …`` shows the traceback instead, for debugging.
"""

from __future__ import annotations

import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click
import sqlalchemy as sa

__all__ = ['EXIT_DATABASE', 'EXIT_SETUP', 'CommandFailed', 'driver_hint', 'guarded', 'guarded_import',
           'show_tracebacks', 'tracebacks_shown']

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


def tracebacks_shown() -> bool:
    return _traceback


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
    hint = driver_hint(error)
    if hint is not None:
        return CommandFailed(f'{doing}: {hint}')
    if isinstance(error, sa.exc.DBAPIError) and _sqlite_cannot_open(error):
        # A path to fix, not a server to wait for: a setup error, not "try again later".
        return CommandFailed(f'{doing}: cannot open the SQLite file (does its directory exist, and may this user '
                             f'write there?): {error.orig}')
    if isinstance(error, sa.exc.DBAPIError):
        reason = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else type(error.orig).__name__
        return CommandFailed(f'{doing}: the database did not answer: {reason}', EXIT_DATABASE)
    if isinstance(error, (RuntimeError, ValueError)):
        return CommandFailed(f'{doing}: {error}')
    return CommandFailed(f'{doing}: {type(error).__name__}: {error}')


def _sqlite_cannot_open(error: sa.exc.DBAPIError) -> bool:
    return type(error.orig).__module__ == 'sqlite3' and 'unable to open database file' in str(error.orig)


#: Driver modules -> (URL scheme to use, the jet-sqla extra that installs its driver).
_DRIVERS = {
    'psycopg': ('postgresql+psycopg://', 'postgres'),
    'psycopg2': ('postgresql+psycopg://', 'postgres'),
    'pymysql': ('mysql+pymysql:// or mariadb+pymysql://', 'mysql'),
    'MySQLdb': ('mysql+pymysql:// or mariadb+pymysql://', 'mysql'),
}


def driver_hint(error: BaseException) -> str | None:
    """What to install or write instead, when a database URL names a driver or scheme that is not there."""
    if isinstance(error, sa.exc.NoSuchModuleError):
        if 'dialects:postgres' in str(error) and 'postgresql' not in str(error):
            return ("'postgres://' is not a SQLAlchemy URL scheme: write postgresql+psycopg://… "
                    "(its driver comes with pip install 'jet-sqla[postgres]')")
        return f'{error}; check the scheme of the database URL'
    if isinstance(error, ModuleNotFoundError) and error.name:
        found = _DRIVERS.get(error.name.partition('.')[0])
        if found is not None:
            scheme, extra = found
            return (f'the database driver {error.name!r} is not installed: use {scheme} and '
                    f"pip install 'jet-sqla[{extra}]'")
    return None


def guarded_import(module_name: str, importer: Callable[[str], T]) -> T:
    """Import the user's module; a failure names the file and line that raised, and hints at ``--traceback``."""
    try:
        return importer(module_name)
    except (click.ClickException, KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:
        if _traceback:
            raise
        if isinstance(error, ModuleNotFoundError) and error.name and module_name.startswith(error.name):
            # The target itself is not there: no file of the user's to point at.
            raise CommandFailed(f'importing {module_name}: No module named {error.name!r} '
                                '(is the current directory, or its package, on the path?)') from None
        failure = _failure(f'importing {module_name}', error)
        where = _where(error)
        located = f' ({where})' if where else ''
        raise CommandFailed(f'{failure.message}{located}; jet-sqla --traceback … shows the full traceback',
                            failure.exit_code) from None


def _library_directories() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    here = str(Path(__file__).resolve().parents[1])  # jet_sqla itself
    found = {paths[name] for name in ('stdlib', 'platstdlib', 'purelib', 'platlib') if name in paths}
    return tuple(sorted({str(Path(path).resolve()) for path in found} | {here, sys.prefix}))


def _where(error: BaseException) -> str | None:
    """``file, line N``: where the user's own code raised (the innermost frame outside Python and its libraries)."""
    if isinstance(error, SyntaxError) and error.filename:
        return f'{_shown_path(error.filename)}, line {error.lineno}'
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith('<')]
    libraries = _library_directories()
    own = [frame for frame in frames if not str(Path(frame.filename).resolve()).startswith(libraries)]
    if not (own or frames):
        return None
    chosen = (own or frames)[-1]
    return f'{_shown_path(chosen.filename)}, line {chosen.lineno}'


def _shown_path(filename: str) -> str:
    path = Path(filename).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
