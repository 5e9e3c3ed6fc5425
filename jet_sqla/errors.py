"""The errors jet_sqla's domain code raises.

Each class carries the HTTP status it answers with and a stable ``code``; its
:meth:`JetError.details` are the extra facts a client may act on. Nothing here
knows a framework: :mod:`jet_sqla.problems` renders any of them, in either of
the two wire dialects, and :mod:`jet_sqla.http` only writes the bytes. A new
subclass needs nothing else to be rendered: set ``status`` and ``code`` (or
inherit them) and, if it has any, return its details. A ``fields`` detail
(field name -> reason) becomes the per-field errors of a 400, unless
:meth:`JetError.form_errors` says they are not fields of the form.
``ActionError`` is the one users raise themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    'ActionError',
    'Conflict',
    'DatabaseUnavailable',
    'Forbidden',
    'IdempotencyNeedsAudit',
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
    'ValueRefused',
]


class JetError(Exception):
    """Base of every error jet_sqla reports to a client.

    Attributes:
        status: The HTTP status it answers with.
        code: A stable machine-readable identifier, sent as ``error_code`` or ``code``.
        message: The human-readable reason, sent as ``detail``.
    """

    status = 500
    code = 'error'

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Extra keys for the JSON error body; ``fields`` maps each bad value's name to its reason."""
        return {}

    def form_errors(self) -> Mapping[str, Any]:
        """The reasons that belong to fields of the action's form, shown beside each field by Jet Admin."""
        fields = self.details().get('fields')
        return fields if isinstance(fields, Mapping) else {}

    def general_errors(self) -> list[str]:
        """What a 400 shows as ``non_field_errors``: the message, unless the form's errors say it all."""
        return [] if self.form_errors() else [self.message]


class ActionError(JetError):
    """Raised by an action on purpose: a 4xx carrying ``message``, and a rollback.

    Example::

        if amount <= 0:
            raise ActionError('Amount must be positive')               # a general error of the form
        raise ActionError('More than the balance', field='amount')    # the error of that form field

    Args:
        message: What the operator reads.
        field: The form field the message is about, if any.
    """

    status = 400
    code = 'action_error'

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def details(self) -> dict[str, Any]:
        return {'fields': {self.field: self.message}} if self.field is not None else {}


class MessageError(JetError):
    """The request itself is malformed: bad JSON, no name, unknown message."""

    status = 400
    code = 'bad_request'

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class IdempotencyNeedsAudit(MessageError):
    """An ``Idempotency-Key`` sent to a bridge built without ``audit=True``, which has nowhere to keep it."""

    code = 'idempotency_needs_audit'

    def __init__(self) -> None:
        super().__init__('Idempotency keys need the bridge to be built with audit=True')


class ValueRefused(MessageError):
    """The database refused a value the action wrote (too long, out of range, malformed).

    Attributes:
        column: The column the database named, when its driver says (``None`` otherwise).
    """

    code = 'value_refused'

    def __init__(self, message: str, column: str | None = None) -> None:
        super().__init__(message)
        self.column = column

    def details(self) -> dict[str, Any]:
        return {'column': self.column} if self.column else {}


class InvalidParams(JetError):
    """One or more submitted values are bad. Every failing field is listed.

    Args:
        fields: Each bad value's name, with its reason.
        message: A summary; by default one made of the fields.
        form: The names are fields of the action's form. Otherwise they are the
            request's own params (``ids``, ``model``, ``inverseIds``…), which a
            form has no place for: Jet's dialect lists them as general errors.
    """

    status = 400
    code = 'invalid_params'

    def __init__(self, fields: Mapping[str, str], message: str | None = None, *, form: bool = False) -> None:
        self.fields = dict(fields)
        self.form = form
        #: A message given on purpose says more than the fields, so it is shown beside them.
        self._summary_only = message is None
        if message is None:
            listed = '; '.join(f'{name}: {reason}' for name, reason in self.fields.items())
            message = f'Invalid parameters: {listed}'
        super().__init__(message)

    def details(self) -> dict[str, Any]:
        return {'fields': self.fields}

    def form_errors(self) -> Mapping[str, Any]:
        return self.fields if self.form else {}

    def general_errors(self) -> list[str]:
        summary = [] if self._summary_only and self.fields else [self.message]
        if self.form:
            return summary
        return summary + [f'{name}: {reason}' for name, reason in self.fields.items()] or [self.message]


class NotFound(JetError):
    """An unknown action, collection or field."""

    status = 404
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

    status = 401
    code = 'unauthorized'


class Forbidden(JetError):
    """Valid credentials that may not do this."""

    status = 403
    code = 'forbidden'


class Conflict(JetError):
    """An idempotency key reused for a different request."""

    status = 409
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

    status = 413
    code = 'too_large'


class DatabaseUnavailable(JetError):
    """The database could not be reached; nothing was written."""

    status = 503
    code = 'database_unavailable'


class OutcomeUnknown(DatabaseUnavailable):
    """The connection died during the COMMIT: the run may or may not have been applied.

    Unlike its parent, this is not safe to retry blindly.
    """

    code = 'outcome_unknown'


class ServerBusy(JetError):
    """Every database connection is in use and none came free in time; nothing was run."""

    status = 503
    code = 'server_busy'


class StatementTimeout(JetError):
    """An action's statement ran past its ``timeout``; it was rolled back."""

    status = 504
    code = 'timeout'


class InternalError(JetError):
    """An unexpected failure; the details go to the log only."""

    status = 500
    code = 'internal_error'
