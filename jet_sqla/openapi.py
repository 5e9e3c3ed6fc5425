"""The OpenAPI 3.1 document of jet_sqla's HTTP endpoints.

It describes the protocol, not one app's actions: the messages jet_sqla
answers itself (list_records only with the console on), every error it can
send, the health check and the document itself. It depends only on the bridge's settings, so it is built once per set
of settings and served as fixed bytes.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence
from typing import Any

from . import encoding, problems
from .fields import Field
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
from .options import MAX_LIMIT, MAX_OFFSET, MAX_SEARCH_LENGTH

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

#: The schema of each message's request body, by message name.
_MESSAGE_SCHEMAS = {
    GET_ACTION_LIST: 'GetActionList',
    EXECUTE_ACTION: 'ExecuteAction',
    GET_FIELD_OPTIONS: 'GetFieldOptions',
    LIST_RECORDS: 'ListRecords',
    GET_RUN: 'GetRun',
    LIST_RUNS: 'ListRuns',
    UNDO_RUN: 'UndoRun',
    GET_JOB: 'GetJob',
    CANCEL_JOB: 'CancelJob',
}

_JOB_PARAMS = {
    'type': 'object',
    'required': ['job'],
    'properties': {'job': {'type': 'string', 'pattern': '^[0-9a-f]{32}$',
                           'description': 'The id execute_action answered for a background action.'}},
}

_ID = {'oneOf': [{'type': 'string'}, {'type': 'integer'}], 'description': 'A primary key, as text or a number.'}
_RUN_ID = {'type': 'integer', 'minimum': 1, 'description': 'A log id, as execute_action answers it in `run`.'}


def _ref(name: str) -> dict[str, str]:
    return {'$ref': f'#/components/schemas/{name}'}


def _message(name: str, params: dict[str, Any], summary: str, *, params_required: bool) -> dict[str, Any]:
    return {
        'type': 'object',
        'title': name,
        'description': summary,
        'required': ['name', 'params'] if params_required else ['name'],
        'properties': {'name': {'const': name}, 'params': params},
    }


def _schemas(max_ids: int, messages: Sequence[str]) -> dict[str, Any]:
    ids = {
        'oneOf': [
            {'type': 'array', 'items': _ID, 'maxItems': max_ids},
            {'type': 'string', 'description': 'Comma-separated ids: "1,2,3".'},
        ],
    }
    form_values = {
        'type': 'object',
        'description': 'The form values by field name, plus the records the action runs on.',
        'properties': {
            'ids': {**ids, 'description': f'The selected records; at most {max_ids} (more is a 413).'},
            'id': _ID,
            'idempotency_key': {'type': 'string', 'minLength': 1, 'maxLength': 255},
        },
        'additionalProperties': True,
    }
    options_query = {
        'form': {'type': 'object', 'description': 'The other values of the form.'},
        'q': {'type': 'string', 'maxLength': MAX_SEARCH_LENGTH,
              'description': 'A search term, matched case-insensitively. At most 200 characters by default '
                             '(Bridge(max_search_length=)); longer is a 400.'},
        'limit': {'type': 'integer', 'minimum': 1, 'maximum': MAX_LIMIT},
        'offset': {'type': 'integer', 'minimum': 0, 'maximum': MAX_OFFSET},
        'after': {'description': 'Keyset paging: only options whose value comes after this one.'},
    }
    return {
        'Message': {
            'oneOf': [_ref(_MESSAGE_SCHEMAS[name]) for name in messages],
            'discriminator': {
                'propertyName': 'name',
                'mapping': {name: _ref(_MESSAGE_SCHEMAS[name])['$ref'] for name in messages},
            },
        },
        'GetActionList': _message(
            GET_ACTION_LIST, {'type': 'object'}, 'The declared actions and their forms.', params_required=False,
        ),
        'ExecuteAction': _message(
            EXECUTE_ACTION,
            {
                'type': 'object',
                'required': ['name'],
                'properties': {
                    'name': {'type': 'string', 'minLength': 1, 'description': "The action's name."},
                    'model': {'type': 'string', 'description': 'The collection, for an action that serves several.'},
                    'dry_run': {'type': 'boolean', 'description': 'Run, answer the changes, and roll back.'},
                    'ids': {**ids, 'description': "The records, beside the form (Jet Admin's client sends them "
                                                  'here); if the form has ids too, they must agree.'},
                    'id': _ID,
                    'inverseIds': {
                        'oneOf': [{'type': 'boolean'}, {'enum': ['true', 'false']}],
                        'description': ('"Select all": every record of the collection except `ids`, in primary-key '
                                        'order; bulk record actions only. More than the ids limit is a 413.'),
                    },
                    'inverse_ids': {'oneOf': [{'type': 'boolean'}, {'enum': ['true', 'false']}]},
                    'params': form_values,
                },
            },
            'Run one action in one transaction.',
            params_required=True,
        ),
        'GetFieldOptions': _message(
            GET_FIELD_OPTIONS,
            {
                'type': 'object',
                'required': ['field'],
                'properties': {
                    'model': {'type': 'string', 'description': 'The collection whose column this is.'},
                    'action': {'type': 'string', 'description': 'The action whose form field this is.'},
                    'field': {'type': 'string', 'minLength': 1},
                    **options_query,
                },
            },
            'The choices of a select box.',
            params_required=True,
        ),
        'ListRecords': _message(
            LIST_RECORDS,
            {
                'type': 'object',
                'required': ['model'],
                'properties': {
                    'model': {'type': 'string', 'minLength': 1},
                    'limit': options_query['limit'],
                    'offset': options_query['offset'],
                },
            },
            "A page of a collection's rows, in primary-key order.",
            params_required=True,
        ),
        'GetRun': _message(GET_RUN, {'type': 'object', 'required': ['run'], 'properties': {'run': _RUN_ID}},
                           'One logged run, with the changes it made (audit=True).', params_required=True),
        'ListRuns': _message(
            LIST_RUNS,
            {
                'type': 'object',
                'properties': {
                    'action': {'type': 'string'},
                    'collection': {'type': 'string'},
                    'id': {**_ID, 'description': 'Only runs that changed this record of `collection`.'},
                    'limit': {'type': 'integer', 'minimum': 1, 'maximum': 500},
                    'after': {**_RUN_ID, 'description': 'Only runs older than this one (the `next` of a page).'},
                },
            },
            'Logged runs, newest first (audit=True).',
            params_required=False,
        ),
        'UndoRun': _message(UNDO_RUN, {'type': 'object', 'required': ['run'], 'properties': {'run': _RUN_ID}},
                            'Revert a run from its change history, as a run of its own.', params_required=True),
        'Run': {'type': 'object', 'required': ['run', 'action', 'outcome'], 'additionalProperties': True,
                'properties': {'run': {'type': 'integer'}, 'action': {'type': 'string'}, 'outcome': {'type': 'string'},
                               'changes': {'type': ['array', 'null']}, 'counts': {'type': 'object'}}},
        'RunsPage': {'type': 'object', 'required': ['runs', 'has_more'],
                     'properties': {'runs': {'type': 'array', 'items': _ref('Run')}, 'has_more': {'type': 'boolean'},
                                    'next': {'type': ['integer', 'null']}}},
        'FormField': {
            'type': 'object',
            'required': ['name', 'field', 'required', 'params'],
            'properties': {
                'name': {'type': 'string'},
                'field': {'enum': [field.value for field in Field]},
                'required': {'type': 'boolean'},
                'label': {'type': 'string'},
                'description': {'type': 'string'},
                'params': {'type': 'object'},
            },
        },
        'ActionDescription': {
            'type': 'object',
            'required': ['name', 'params'],
            'properties': {
                'name': {'type': 'string'},
                'label': {'type': 'string'},
                'description': {'type': 'string'},
                'model_action': {
                    'type': 'object',
                    'properties': {
                        'model': {'oneOf': [{'type': 'string'}, {'type': 'array', 'items': {'type': 'string'}}]},
                        'for_instance': {'type': 'boolean'},
                        'bulk': {'type': 'boolean'},
                    },
                },
                'common_action': {'type': 'object'},
                'params': {'type': 'array', 'items': _ref('FormField')},
            },
        },
        'ActionList': {'type': 'array', 'items': _ref('ActionDescription')},
        'ActionResult': {
            'type': 'object',
            'required': ['result'],
            'properties': {'result': {'const': True}},
            'additionalProperties': True,
            'description': "`result: true`, merged with the dict the action returned.",
        },
        'GetJob': _message(GET_JOB, _JOB_PARAMS, "A background job's progress.", params_required=True),
        'CancelJob': _message(CANCEL_JOB, _JOB_PARAMS, 'Stop the chunks of a background job that have not started.',
                              params_required=True),
        'JobState': {
            'type': 'object',
            'description': 'What get_job and cancel_job answer.',
            'required': ['job', 'action', 'collection', 'status', 'total', 'done', 'failed', 'errors',
                         'created_at', 'started_at', 'finished_at'],
            'properties': {
                'job': {'type': 'string'},
                'action': {'type': 'string'},
                'collection': {'type': ['string', 'null']},
                'status': {'enum': ['queued', 'running', 'succeeded', 'failed', 'cancelled']},
                'total': {'type': 'integer', 'minimum': 0},
                'done': {'type': 'integer', 'minimum': 0},
                'failed': {'type': 'integer', 'minimum': 0},
                'errors': {
                    'type': 'array',
                    'maxItems': 100,
                    'items': {'type': 'object', 'required': ['first_id', 'last_id', 'message'],
                              'properties': {'first_id': {}, 'last_id': {}, 'message': {'type': 'string'}}},
                },
                'created_at': {'type': 'string'},
                'started_at': {'type': ['string', 'null']},
                'finished_at': {'type': ['string', 'null']},
            },
        },
        'Option': {
            'type': 'object',
            'required': ['value', 'name'],
            'properties': {
                'value': {},
                'name': {'type': 'string'},
                'color': {'type': ['string', 'null']},
            },
        },
        'Options': {'type': 'array', 'items': _ref('Option')},
        'RecordsPage': {
            'type': 'object',
            'required': ['pk', 'columns', 'records', 'has_more'],
            'properties': {
                'pk': {'type': ['string', 'null']},
                'columns': {
                    'type': 'array',
                    'items': {
                        'type': 'object',
                        'required': ['name', 'field'],
                        'properties': {'name': {'type': 'string'}, 'field': {'type': 'string'},
                                       'related': {'type': 'string', 'description': 'A foreign key: its collection.'}},
                    },
                },
                'records': {'type': 'array', 'items': {'type': 'object'}},
                'labels': {
                    'type': 'object',
                    'description': 'Per foreign-key column, the label of each key on the page, by the key as text.',
                    'additionalProperties': {'type': 'object', 'additionalProperties': {'type': 'string'}},
                },
                'has_more': {'type': 'boolean'},
            },
        },
        **problems.json_schemas(),
        'Health': {
            'type': 'object',
            'required': ['status'],
            'properties': {
                'status': {'enum': ['ok', 'unavailable']},
                'database': {'type': 'string'},
            },
        },
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {'description': description, 'content': {'application/json': {'schema': schema}}}


def _error_responses(statuses: Sequence[int]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in statuses:
        response = _json(_ref('ValidationErrors' if status == 400 else 'Error'), ERROR_STATUSES[status])
        response['content']['application/problem+json'] = {'schema': _ref('Problem')}
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
                            'schema': _ref('Message'),
                            'examples': examples,
                        }},
                    },
                    'responses': {
                        '200': _json(
                            {'anyOf': [_ref(schema) for schema, message in results.items() if message in messages]},
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
                        '200': _json(_ref('Health'), 'The database answers.'),
                        '503': _json(_ref('Health'), 'The database does not answer.'),
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
            'schemas': _schemas(max_ids, messages),
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
