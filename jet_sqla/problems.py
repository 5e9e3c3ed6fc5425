"""Error bodies in the two dialects a client may ask for: the one place they are built.

**Jet's dialect** (the default), the one Jet Admin's client renders, and the
reference bridge's, in the style of Django REST framework:

- a 400 is ``{"non_field_errors": ["<what went wrong>"], "<field>": ["<reason>"], ...}``:
  each failing form field under its own name, and nothing else at the top
  level; a bad request param that is no form field (``ids``, ``model``…) is a
  general error that names it (``"ids: ..."``);
- every other error is ``{"detail": "<message>", "error": "<message>",
  "error_code": "<code>", ...details}``.

**Problem details** (RFC 9457), for a request whose ``Accept`` includes
``application/problem+json``: ``{"type", "title", "status", "detail", "code",
...details}`` with the content type ``application/problem+json``. The details
of an invalid form carry ``fields`` (field name -> reason).

Both are built from a :class:`~jet_sqla.errors.JetError` alone: its ``status``,
``code``, ``message``, :meth:`~jet_sqla.errors.JetError.details` and
:meth:`~jet_sqla.errors.JetError.general_errors`. No responder writes error
JSON by hand.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from .errors import JetError

__all__ = [
    'JSON',
    'NON_FIELD_ERRORS',
    'PROBLEM_JSON',
    'ErrorBody',
    'jet_body',
    'json_schemas',
    'problem_body',
    'render',
    'wants_problem',
]

JSON = 'application/json'
PROBLEM_JSON = 'application/problem+json'
#: The key of a 400's errors that belong to no single field (Django REST framework's name).
NON_FIELD_ERRORS = 'non_field_errors'

#: Keys of a problem document that details may not replace.
_PROBLEM_MEMBERS = frozenset({'type', 'title', 'status', 'detail', 'code'})
#: Keys of a Jet error body that details may not replace.
_JET_MEMBERS = frozenset({'detail', 'error', 'error_code'})

ErrorBody = dict[str, Any]


def wants_problem(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for ``application/problem+json`` (with a non-zero quality)."""
    if not accept or 'problem' not in accept.lower():
        return False
    for item in accept.split(','):
        media_type, *parameters = item.split(';')
        if media_type.strip().lower() != PROBLEM_JSON:
            continue
        quality = next((value for name, _, value in (p.partition('=') for p in parameters)
                        if name.strip().lower() == 'q'), '1')
        try:
            if float(quality) > 0:
                return True
        except ValueError:
            return True  # a malformed weight still names the type
    return False


def render(error: JetError, *, problem: bool) -> tuple[str, ErrorBody]:
    """The content type and the body of ``error`` in the dialect asked for."""
    if problem:
        return PROBLEM_JSON, problem_body(error)
    return JSON, jet_body(error)


def jet_body(error: JetError) -> ErrorBody:
    """Jet's dialect: the body Jet Admin's client shows next to its form, or as a message."""
    if error.status == 400:
        body: ErrorBody = {}
        general = error.general_errors()
        if general:
            body[NON_FIELD_ERRORS] = list(general)
        for name, reason in error.form_errors().items():
            reasons = [str(item) for item in reason] if isinstance(reason, list) else [str(reason)]
            body.setdefault(str(name), []).extend(reasons)
        if not body:  # never an empty 400: the client would have nothing to show
            body[NON_FIELD_ERRORS] = [error.message]
        return body
    body = {key: value for key, value in error.details().items() if key not in _JET_MEMBERS}
    body.update(detail=error.message, error=error.message, error_code=error.code)
    return body


def problem_body(error: JetError) -> ErrorBody:
    """RFC 9457 problem details; ``type`` is ``about:blank``, so ``title`` is the status's phrase."""
    body: ErrorBody = {
        'type': 'about:blank',
        'title': status_phrase(error.status),
        'status': error.status,
        'detail': error.message,
        'code': error.code,
    }
    body.update((key, value) for key, value in error.details().items() if key not in _PROBLEM_MEMBERS)
    return body


def status_phrase(status: int) -> str:
    """``Bad Request`` for 400; ``Error`` for a status no one named."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return 'Error'


def code_for_status(status: int) -> str:
    """A code for an error that has none of its own: ``not_found`` for 404, ``method_not_allowed`` for 405."""
    return status_phrase(status).lower().replace(' ', '_').replace('-', '_')


def json_schemas() -> dict[str, Any]:
    """JSON Schemas of the bodies above, for the OpenAPI document: ``ValidationErrors`` (a 400 in
    Jet's dialect), ``Error`` (any other status in Jet's dialect) and ``Problem``."""
    reasons = {'type': 'array', 'items': {'type': 'string'}, 'minItems': 1}
    details = {
        'fields': {
            'type': 'object',
            'additionalProperties': {'type': 'string'},
            'description': 'Each bad form value or message param, with its reason.',
        },
        'collection': {'type': 'string'},
        'missing_ids': {'type': 'array', 'description': 'The ids that name no record.'},
    }
    return {
        'ValidationErrors': {
            'type': 'object',
            'description': ("Jet's dialect for a 400, as Jet Admin's client renders it: `non_field_errors` "
                            'are general errors, every other key is the form field its reasons belong to.'),
            'minProperties': 1,
            'properties': {'non_field_errors': reasons},
            'additionalProperties': reasons,
        },
        'Error': {
            'type': 'object',
            'description': "Jet's dialect for every status but 400, with the error's details beside.",
            'required': ['detail', 'error', 'error_code'],
            'properties': {
                'detail': {'type': 'string', 'description': 'The reason, fit to show the operator.'},
                'error': {'type': 'string', 'description': 'The same reason, under the key the reference used.'},
                'error_code': {'type': 'string', 'description': 'A stable identifier: too_large, not_found…'},
                **details,
            },
            'additionalProperties': True,
        },
        'Problem': {
            'type': 'object',
            'description': 'RFC 9457 problem details, for a request whose Accept includes application/problem+json.',
            'required': ['type', 'title', 'status', 'detail', 'code'],
            'properties': {
                'type': {'type': 'string', 'description': '"about:blank": `code` tells the problems apart.'},
                'title': {'type': 'string', 'description': 'The phrase of the HTTP status, as "Bad Request".'},
                'status': {'type': 'integer'},
                'detail': {'type': 'string', 'description': 'The reason, fit to show the operator.'},
                'code': {'type': 'string', 'description': 'A stable identifier: invalid_params, too_large…'},
                **details,
            },
            'additionalProperties': True,
        },
    }
