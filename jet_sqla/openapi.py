"""The OpenAPI 3.1 document of jet_sqla's HTTP endpoints.

It describes the protocol, not one app's actions: the messages jet_sqla
answers itself (list_records only with the console on), every error it can
send, the health check and the document itself. It depends only on the bridge's settings, so it is built once per set
of settings and served as fixed bytes.

This module holds the paths, their operations and responses; the schemas they
refer to are in ``openapi_schemas``.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence
from typing import Any

from . import encoding
from .messages import (
    CANCEL_JOB,
    EXECUTE_ACTION,
    GET_ACTION_LIST,
    GET_FIELD_OPTIONS,
    GET_JOB,
    GET_RUN,
    LIST_RECORDS,
    LIST_RUNS,
    UNDO_RUN,
)
from .openapi_schemas import component_schemas, ref

__all__ = ['ERROR_STATUSES', 'build_document', 'document']

OPENAPI_VERSION = '3.1.0'

#: Every error status the messages endpoint answers with, and when.
ERROR_STATUSES: dict[int, str] = {
    400: ('The body, a message or a form value is malformed. Each bad form value is named: under its own '
          'key (Jet\'s dialect) or in `fields` (problem details).'),
    401: 'No credentials, or credentials that do not verify.',
    403: 'Valid credentials that may not do this: another project, a read-only user, or `allow=`.',
    404: 'An unknown action, collection, field, or records (`missing_ids` lists them).',
    409: ('The action conflicts with existing data, an idempotency key was reused for another request, or an '
          'undo found rows changed since the run (`conflicts` lists them; nothing was written).'),
    413: ('The body is over `max_body_size` bytes, or the request names (or selects, with `inverseIds`) '
          'more than `max_ids` records.'),
    500: 'The action raised an unexpected exception; it was rolled back and the log has the details.',
    503: ('The database is unavailable or the action could not take its locks; nothing was changed, '
          'except with code `outcome_unknown`: the connection died during the COMMIT, check before retrying.'),
    504: "An action's statement ran past its `timeout`; it was rolled back.",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {'description': description, 'content': {'application/json': {'schema': schema}}}


def _error_responses(statuses: Sequence[int]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in statuses:
        response = _json(ref('ValidationErrors' if status == 400 else 'Error'), ERROR_STATUSES[status])
        response['content']['application/problem+json'] = {'schema': ref('Problem')}
        if status == 401:
            response['headers'] = {'WWW-Authenticate': {'schema': {'type': 'string'}}}
        elif status == 503:
            response['headers'] = {'Retry-After': {'schema': {'type': 'string'}}}
        responses[str(status)] = response
    return responses


def build_document(
    *,
    prefix: str = '/api',
    max_body_size: int = 1024 * 1024,
    max_ids: int = 100_000,
    collections: Sequence[str] = (),
    listing: bool = False,
    history: bool = False,
    title: str = 'jet_sqla',
    version: str = '0.1.0',
) -> dict[str, Any]:
    """The OpenAPI document as a dict.

    Args:
        prefix: The URL prefix of every route.
        max_body_size: The body limit, stated in the document.
        max_ids: The ids limit, stated in the document.
        collections: Collection names, given as examples.
        listing: The server answers ``list_records`` (it does when the console is on).
        history: The server keeps change history (``get_run``, ``list_runs``, ``undo_run``).
        title: The API's title.
        version: The API's version.
    """
    prefix = '/' + prefix.strip('/') if prefix.strip('/') else ''
    example_model = collections[0] if collections else 'users'
    messages = [GET_ACTION_LIST, EXECUTE_ACTION, GET_FIELD_OPTIONS, GET_JOB, CANCEL_JOB] + (
        [LIST_RECORDS] if listing else [])
    if history:
        messages += [GET_RUN, LIST_RUNS, UNDO_RUN]
    examples: dict[str, Any] = {GET_ACTION_LIST: {'value': {'name': GET_ACTION_LIST}}}
    if listing:
        examples[LIST_RECORDS] = {'value': {'name': LIST_RECORDS, 'params': {'model': example_model}}}
    results = {'ActionList': GET_ACTION_LIST, 'ActionResult': EXECUTE_ACTION, 'Options': GET_FIELD_OPTIONS,
               'RecordsPage': LIST_RECORDS, 'JobState': GET_JOB, 'Run': GET_RUN, 'RunsPage': LIST_RUNS}
    return {
        'openapi': OPENAPI_VERSION,
        'info': {
            'title': title,
            'version': version,
            'description': (
                'The Jet Admin messages protocol. Every response, errors included, is JSON; '
                f'bodies over {max_body_size} bytes and requests naming more than {max_ids} ids get a 413.'
            ),
        },
        'paths': {
            f'{prefix}/messages/': {
                'post': {
                    'operationId': 'postMessage',
                    'summary': 'Answer one Jet message.',
                    'security': [{'bearer': []}, {'authorization': []}],
                    'parameters': [{
                        'name': 'Idempotency-Key',
                        'in': 'header',
                        'required': False,
                        'description': 'execute_action only, with audit=True: a repeated key replays the first answer.',
                        'schema': {'type': 'string', 'minLength': 1, 'maxLength': 255},
                    }, {
                        'name': 'Accept',
                        'in': 'header',
                        'required': False,
                        'description': ('Errors come in Jet\'s dialect unless this includes '
                                        'application/problem+json, which gets RFC 9457 problem details.'),
                        'schema': {'type': 'string'},
                    }],
                    'requestBody': {
                        'required': True,
                        'content': {'application/json': {
                            'schema': ref('Message'),
                            'examples': examples,
                        }},
                    },
                    'responses': {
                        '200': _json(
                            {'anyOf': [ref(schema) for schema, message in results.items() if message in messages]},
                            '; '.join(f'{message}: {schema}' for schema, message in results.items()
                                      if message in messages) + '.',
                        ),
                        **_error_responses([400, 401, 403, 404, 409, 413, 500, 503, 504]),
                    },
                },
            },
            f'{prefix}/health': {
                'get': {
                    'operationId': 'getHealth',
                    'summary': 'Whether the database answers. No authentication.',
                    'security': [],
                    'responses': {
                        '200': _json(ref('Health'), 'The database answers.'),
                        '503': _json(ref('Health'), 'The database does not answer.'),
                    },
                },
            },
            f'{prefix}/openapi.json': {
                'get': {
                    'operationId': 'getOpenAPI',
                    'summary': 'This document. No authentication.',
                    'security': [],
                    'responses': {'200': _json({'type': 'object'}, 'The OpenAPI document.')},
                },
            },
        },
        'components': {
            'schemas': component_schemas(max_ids, messages),
            'securitySchemes': {
                'bearer': {'type': 'http', 'scheme': 'bearer', 'description': 'A shared token.'},
                'authorization': {
                    'type': 'apiKey',
                    'in': 'header',
                    'name': 'Authorization',
                    'description': '"Token <shared token>", or "JWT <token>" signed by Jet Admin (RS256).',
                },
            },
        },
    }


@functools.lru_cache(maxsize=32)
def document(
    *, prefix: str = '/api', max_body_size: int = 1024 * 1024, max_ids: int = 100_000,
    collections: tuple[str, ...] = (), listing: bool = False, history: bool = False,
) -> bytes:
    """The OpenAPI document as JSON bytes, built once per set of settings."""
    # PERF: served on every GET of openapi.json; the bytes never change for these settings.
    try:
        version = importlib.metadata.version('jet-sqla')
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = '0'
    return encoding.dumps(build_document(prefix=prefix, max_body_size=max_body_size, max_ids=max_ids,
                                         collections=collections, listing=listing, history=history,
                                         version=version))
