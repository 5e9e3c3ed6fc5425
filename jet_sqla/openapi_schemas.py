"""The JSON schemas of jet_sqla's OpenAPI document: its ``components.schemas``.

What each message's body takes (``Message`` and one schema per message), what
the messages answer (``ActionList``, ``JobState``, ``RecordsPage``...), the
error bodies of both dialects (from ``problems``) and the health check.
``openapi`` puts them in the document and points its paths at them with
``ref``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import problems
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

__all__ = ['component_schemas', 'ref']

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


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema called ``name``."""
    return {'$ref': f'#/components/schemas/{name}'}


def _message(name: str, params: dict[str, Any], summary: str, *, params_required: bool) -> dict[str, Any]:
    return {
        'type': 'object',
        'title': name,
        'description': summary,
        'required': ['name', 'params'] if params_required else ['name'],
        'properties': {'name': {'const': name}, 'params': params},
    }


def component_schemas(max_ids: int, messages: Sequence[str]) -> dict[str, Any]:
    """The document's ``components.schemas``: what each message takes and answers, and both error bodies.

    Args:
        max_ids: The ids limit, stated in the schemas of ``ids``.
        messages: The messages the server answers; ``Message`` is one of these.
    """
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
            'oneOf': [ref(_MESSAGE_SCHEMAS[name]) for name in messages],
            'discriminator': {
                'propertyName': 'name',
                'mapping': {name: ref(_MESSAGE_SCHEMAS[name])['$ref'] for name in messages},
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
                     'properties': {'runs': {'type': 'array', 'items': ref('Run')}, 'has_more': {'type': 'boolean'},
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
                'params': {'type': 'array', 'items': ref('FormField')},
            },
        },
        'ActionList': {'type': 'array', 'items': ref('ActionDescription')},
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
        'Options': {'type': 'array', 'items': ref('Option')},
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
