"""The errors jet_sqla's domain code raises.

They know nothing of HTTP: :mod:`jet_sqla.http` maps each one to the nearest
Falcon error. ``ActionError`` is the one users raise themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    'ActionError',
    'Conflict',
    'DatabaseUnavailable',
    'Forbidden',
    'InternalError',
    'InvalidParams',
    'JetError',
    'KeyBelongsToAnother',
    'LockNotGranted',
    'MessageError',
    'NotFound',
    'OutcomeUnknown',
    'RecordsNotFound',
    'SearchTooComplex',
    'ServerBusy',
    'StatementTimeout',
    'TooLarge',
    'Unauthorized',
]


class JetError(Exception):
    """Base of every error jet_sqla reports to a client.

    Attributes:
        code: A stable machine-readable identifier, sent as ``code``.
        message: The human-readable reason, sent as ``description``.
    """

    code = 'error'

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Extra keys for the JSON error body."""
        return {}


class ActionError(JetError):
    """Raised by an action on purpose: a 4xx carrying ``message``, and a rollback.

    Example::

        if amount <= 0:
            raise ActionError('Amount must be positive')
    """

    code = 'action_error'


class MessageError(JetError):
    """The request itself is malformed: bad JSON, no name, unknown message."""

    code = 'bad_request'

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidParams(JetError):
    """One or more submitted values are bad. Every failing field is listed."""

    code = 'invalid_params'

    def __init__(self, fields: Mapping[str, str], message: str | None = None) -> None:
        self.fields = dict(fields)
        if message is None:
            listed = '; '.join(f'{name}: {reason}' for name, reason in self.fields.items())
            message = f'Invalid parameters: {listed}'
        super().__init__(message)

    def details(self) -> dict[str, Any]:
        return {'fields': self.fields}


class NotFound(JetError):
    """An unknown action, collection or field."""

    code = 'not_found'


class RecordsNotFound(NotFound):
    """Some of the requested ids do not exist in the collection."""

    code = 'records_not_found'

    def __init__(self, collection: str, missing: Sequence[Any]) -> None:
        self.collection = collection
        self.missing = list(missing)
        shown = ', '.join(str(value) for value in self.missing[:20])
        more = f' and {len(self.missing) - 20} more' if len(self.missing) > 20 else ''
        super().__init__(f'No {collection} record with id {shown}{more}')

    def details(self) -> dict[str, Any]:
        return {'collection': self.collection, 'missing_ids': self.missing}


class Unauthorized(JetError):
    """No credentials, or credentials that do not match."""

    code = 'unauthorized'


class Forbidden(JetError):
    """Valid credentials that may not do this."""

    code = 'forbidden'


class Conflict(JetError):
    """An idempotency key reused for a different request."""

    code = 'conflict'


class KeyBelongsToAnother(Conflict):
    """An idempotency key first used by another actor; its stored response is not theirs to see."""

    code = 'idempotency_key_taken'


class LockNotGranted(Conflict):
    """A row lock was not granted in time (another run holds it); nothing was written."""

    code = 'lock_not_granted'


class SearchTooComplex(MessageError):
    """The database refused a search pattern as too long or complex."""

    code = 'search_too_complex'

    def __init__(self, message: str) -> None:
        super().__init__(message)


class TooLarge(JetError):
    """The body, or the number of ids, is over its limit."""

    code = 'too_large'


class DatabaseUnavailable(JetError):
    """The database could not be reached; nothing was written."""

    code = 'database_unavailable'


class OutcomeUnknown(DatabaseUnavailable):
    """The connection died during the COMMIT: the run may or may not have been applied.

    Unlike its parent, this is not safe to retry blindly.
    """

    code = 'outcome_unknown'


class ServerBusy(JetError):
    """Every database connection is in use and none came free in time; nothing was run."""

    code = 'server_busy'


class StatementTimeout(JetError):
    """An action's statement ran past its ``timeout``; it was rolled back."""

    code = 'timeout'


class InternalError(JetError):
    """An unexpected failure; the details go to the log only."""

    code = 'internal_error'
