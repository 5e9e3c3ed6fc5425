"""What a run's client gets: its result as the response body, or its failure as a JetError.

Unexpected failures are logged here, with their traceback, and reach the client
as a generic 500; the database's own failures become the statuses that say
what happened (timeouts, lock waits, a busy pool, refused values).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import exc

from . import database, encoding
from .declaration import Action
from .errors import (
    Conflict,
    DatabaseUnavailable,
    InternalError,
    JetError,
    LockNotGranted,
    ServerBusy,
    StatementTimeout,
    ValueRefused,
)

__all__ = ['as_jet_error', 'result_body', 'with_run']

log = logging.getLogger('jet_sqla.actions')  # the name operators already filter on


def result_body(action: Action, result: Any, dry_run: Mapping[str, Any] | None = None) -> bytes:
    """``{"result": true, ...}`` with the action's dict merged in, encoded before the commit.

    A dry run's changes come last, so that no key the function returns can hide them.
    """
    if result is not None and not isinstance(result, Mapping):
        raise TypeError(f'action {action.name!r} returned {type(result).__name__}; return a dict or None')
    if dry_run is not None:
        return encoding.dumps({'result': True, **(result or {}), 'dry_run': True, **dry_run})
    if result is None:
        return b'{"result":true}'
    return encoding.dumps({'result': True, **result})


def with_run(body: bytes, log_id: int | None) -> bytes:
    """The response with ``"run": <log id>`` added; the stored response leaves it out, as it is not known yet."""
    if log_id is None or not body.endswith(b'}'):
        return body
    return body[:-1] + b',"run":' + str(log_id).encode() + b'}'


def as_jet_error(error: BaseException, action: str) -> JetError:
    """The client-facing form of any failure of a run; unexpected ones are logged with their traceback."""
    if isinstance(error, JetError):
        return error
    if database.is_timeout(error):
        return StatementTimeout(f'{action!r} ran past its timeout and was rolled back')
    if database.is_retryable(error):
        return DatabaseUnavailable(f'{action!r} could not take its locks; it was rolled back, try again')
    if database.is_lock_wait_timeout(error):
        # Another run holds the row: the database is fine, and this run wrote nothing.
        log.warning('action %r was not granted a lock in time: %s', action, type(error).__name__)
        return LockNotGranted(f'{action!r} was not granted a lock in time (another run holds it); '
                              'it was rolled back and nothing was written')
    if database.is_pool_timeout(error):
        log.warning('action %r found no free database connection', action)
        return ServerBusy(f'The server is busy: every database connection is in use; {action!r} did not run, '
                          'try again')
    if isinstance(error, exc.IntegrityError):
        log.warning('action %r violated a constraint: %s', action, error.orig)
        return Conflict(f'{action!r} conflicts with existing data; it was rolled back')
    if isinstance(error, exc.DataError):
        # A value the database cannot store (too long, out of range): almost always the operator's input.
        log.warning('action %r wrote a value the database refused: %s', action, error.orig)
        column = database.refused_column(error)
        where = f' in column {column}' if column else ''
        return ValueRefused(f'{action!r} tried to store a value the database refuses{where} (too long, out of '
                            'range or malformed); it was rolled back', column)
    if database.is_unavailable(error):
        log.error('database unavailable while running %r: %s', action, type(error).__name__)
        return DatabaseUnavailable('The database is unavailable; nothing was changed, try again later')
    log.error('action %r crashed', action, exc_info=error)
    return InternalError('The action failed; it was rolled back. The server log has the details.')
