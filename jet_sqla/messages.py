"""Message dispatch by name; the message names; the reference bridge's handler-style API, re-exported.

Code written for the reference bridge keeps working once its import changes::

    from jet_sqla import messages
    messages.add_handler(messages.GET_ACTION_LIST, get_action_list)

The handlers themselves live in :mod:`jet_sqla.handlers`. Declared actions
and derived options answer first; handlers answer the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import database, encoding, listing
from .actions import Executor
from .auth import Identity
from .catalog import Catalog
from .collection import Collection
from .declaration import ActionRegistry
from .dialect import MAX_DEPTH, decode_params, read_dry_run, read_execute_params
from .errors import (
    DatabaseUnavailable,
    Forbidden,
    InvalidParams,
    JetError,
    MessageError,
    NotFound,
    SearchTooComplex,
    ServerBusy,
    StatementTimeout,
)
from .field_options import FieldOptions
from .handlers import Handlers, add_handler, default_handlers, get_handler
from .history import RunHistory
from .options import MAX_SEARCH_LENGTH, OptionsSource, composite_foreign_key
from .options_query import parse_query
from .reads import read_connection
from .runs import ExecuteRequest

__all__ = [
    'CANCEL_JOB',
    'EXECUTE_ACTION',
    'GET_ACTION_LIST',
    'GET_ELEMENT_STATUS',
    'GET_FIELD_OPTIONS',
    'GET_JOB',
    'GET_RUN',
    'LIST_RECORDS',
    'LIST_RUNS',
    'MAX_DEPTH',
    'UNDO_RUN',
    'Dispatcher',
    'Handlers',
    'add_handler',
    'default_handlers',
    'get_handler',
]

log = logging.getLogger(__name__)

GET_ACTION_LIST = 'get_action_list'
EXECUTE_ACTION = 'execute_action'
GET_FIELD_OPTIONS = 'get_field_options'
GET_ELEMENT_STATUS = 'get_element_status'
#: jet_sqla's read-only listing of a collection's rows, used by the console.
LIST_RECORDS = 'list_records'
#: Change history (with ``audit=True``): one run, the runs, and taking one back.
GET_RUN = 'get_run'
LIST_RUNS = 'list_runs'
UNDO_RUN = 'undo_run'
#: A background run's progress, and stopping it (jet_sqla.jobs).
GET_JOB = 'get_job'
CANCEL_JOB = 'cancel_job'

class Dispatcher:
    """Answers one message. Returns the JSON body as bytes.

    Args:
        catalog: The collections.
        actions: The declared actions.
        field_options: Custom and derived option sources.
        executor: Runs execute_action.
        sessions: Makes read sessions for options and listings.
        engine: Gives connections to option sources that need no session.
        handlers: This bridge's handler-style functions.
        listing: Answer ``list_records`` (the console's table of rows); off
            unless the console is on, so a token grants no raw reads by default.
        read_timeout: Seconds each statement of an options or listing read may
            run; past it the database stops it and the client gets a 504.
            ``None``: no bound.
        max_search_length: The longest ``q``, in characters.
        history: Answers ``get_run``, ``list_runs`` and ``undo_run``.
    """

    def __init__(
        self,
        catalog: Catalog,
        actions: ActionRegistry,
        field_options: FieldOptions,
        executor: Executor,
        sessions: Callable[[], Session],
        handlers: Handlers,
        *,
        engine: sa.Engine,
        listing: bool = False,
        read_timeout: float | None = None,
        max_search_length: int = MAX_SEARCH_LENGTH,
        history: RunHistory | None = None,
    ) -> None:
        self.catalog = catalog
        self.read_timeout = read_timeout
        self.max_search_length = max_search_length
        self.engine = engine
        self.actions = actions
        self.field_options = field_options
        self.executor = executor
        self.sessions = sessions
        self.handlers = handlers
        self._action_list: tuple[int, list[dict[str, Any]], bytes] | None = None
        #: Option queries run in a session from ``sessions`` (the app's own, with its filters), not on a
        #: bare connection.
        self.options_in_sessions = False
        self._routes: dict[str, Callable[[Any, Identity, Any], bytes]] = {
            GET_ACTION_LIST: self.get_action_list,
            EXECUTE_ACTION: self.execute_action,
            GET_FIELD_OPTIONS: self.get_field_options,
        }
        if listing:
            self._routes[LIST_RECORDS] = self.list_records
        if history is not None:
            self.history = history
            self._routes[GET_RUN] = lambda params, identity, request: history.get_run(params, identity.actor)
            self._routes[LIST_RUNS] = lambda params, identity, request: history.list_runs(params, identity.actor)
            self._routes[UNDO_RUN] = self.undo_run
        #: Called before each message; the bridge starts its embedded job runner there, in the serving process.
        self.before: Callable[[], None] | None = None

    def add_route(self, name: str, route: Callable[[Any, Identity, Any], bytes]) -> None:
        """Answer the message ``name`` with ``route(params, identity, request)``."""
        self._routes[name] = route

    def dispatch(self, name: Any, params: Any, identity: Identity, request: Any = None, *,
                 idempotency_key: str | None = None) -> bytes:
        """Answer the message ``name``.

        Raises:
            JetError: a message, action, collection or field that does not exist, or a failed run.
        """
        if not isinstance(name, str) or not name:
            raise MessageError('"name" must be a non-empty string naming the message', code='missing_name')
        params = decode_params(params, 'params')
        if self.before is not None:
            self.before()
        try:
            if name == EXECUTE_ACTION:
                return self.execute_action(params, identity, request, idempotency_key=idempotency_key)
            route = self._routes.get(name)
            if route is not None:
                return route(params, identity, request)
            handler = self.handlers.get_handler(name)
            if handler is None:
                known = ', '.join(sorted(self._routes))
                raise MessageError(f'Unknown message {name[:100]!r}; this server answers {known}',
                                   code='unknown_message')
            return _encode_handler_result(handler(name, params))
        except JetError:
            raise
        except Exception as error:
            if database.is_timeout(error):
                log.warning('a %r read ran past its timeout of %s s and was stopped', name, self.read_timeout)
                limit = f' of {self.read_timeout:g} s' if self.read_timeout is not None else ''
                raise StatementTimeout(f'The {name!r} query ran past its timeout{limit} and was stopped; '
                                       'narrow the search') from error
            if database.is_pattern_too_complex(error):
                raise SearchTooComplex('The search term is too long or complex for the database; shorten it') \
                    from error
            if database.is_pool_timeout(error):
                log.warning('no database connection came free for %r', name)
                raise ServerBusy('The server is busy: every database connection is in use; try again') from error
            # Options, listings and handlers read outside an action's transaction; an
            # outage there is as much the client's to retry as one inside an action.
            if database.is_unavailable(error):
                log.error('database unavailable answering %r: %s', name, type(error).__name__)
                raise DatabaseUnavailable('The database is unavailable; try again later') from error
            raise

    def _cached_action_list(self) -> tuple[list[dict[str, Any]], bytes]:
        # PERF: the list only changes when an action is declared; its bytes are reused.
        if self._action_list is None or self._action_list[0] != len(self.actions):
            described = [action.describe() for action in self.actions]
            self._action_list = (len(self.actions), described, encoding.dumps(described))
        return self._action_list[1], self._action_list[2]

    def get_action_list(self, params: Any, identity: Identity, request: Any) -> bytes:
        described, body = self._cached_action_list()
        handler = self.handlers.get_handler(GET_ACTION_LIST)
        if handler is None:
            return body
        declared = {item['name'] for item in described}
        extra = handler(GET_ACTION_LIST, params) or []
        if not isinstance(extra, list):
            raise TypeError(f'the {GET_ACTION_LIST} handler returned {type(extra).__name__}, not a list')
        return encoding.dumps(described + [item for item in extra if item.get('name') not in declared])

    def execute_action(self, params: Any, identity: Identity, request: Any, *,
                       idempotency_key: str | None = None) -> bytes:
        if identity.read_only:
            raise Forbidden('Read-only users may not execute actions')
        name = params.get('name', params.get('action'))
        action = self.actions.get(name) if isinstance(name, str) else None
        if action is None:
            handler = self.handlers.get_handler(EXECUTE_ACTION)
            if handler is not None:
                return _encode_handler_result(handler(EXECUTE_ACTION, params), default=b'{"result":true}')
            if not isinstance(name, str) or not name:
                # Not an unknown action called "None": the request forgot to say which one.
                raise MessageError('execute_action needs "name" in its params: the action to run '
                                   '(get_action_list lists them)', code='missing_name')
            raise NotFound(f'Unknown action {name[:100]!r}')
        given = params.get('params')
        # An object was walked with the params; a JSON string is decoded apart.
        decoded = given if type(given) is dict else decode_params(given, 'params.params')
        form, inverse = read_execute_params(params, decoded)
        key = idempotency_key if idempotency_key is not None else form.get('idempotency_key')
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 255):
            raise InvalidParams({'idempotency_key': 'expected a string of 1 to 255 characters'})
        return self.executor.execute(
            ExecuteRequest(action, collection=params.get('model'), params=form, actor=identity.actor,
                           request=request, idempotency_key=key, inverse=inverse, grant=identity.grant,
                           dry_run=read_dry_run(params, form))
        )

    def undo_run(self, params: Any, identity: Identity, request: Any) -> bytes:
        if identity.read_only:
            raise Forbidden('Read-only users may not undo runs')
        return self.history.undo_run(params, identity.actor, request)

    def get_field_options(self, params: Any, identity: Identity, request: Any) -> bytes:
        field = params.get('field')
        if not isinstance(field, str) or not field:
            raise InvalidParams({'field': 'expected the name of a field'})
        query = parse_query(params, identity.actor, max_search_length=self.max_search_length)
        source = self._options_source(params, field)
        if source is None:
            handler = self.handlers.get_handler(GET_FIELD_OPTIONS)
            if handler is not None:
                return _encode_handler_result(handler(GET_FIELD_OPTIONS, params), default=b'[]')
            owner = params.get('action') or params.get('model')
            reason = self._no_options_reason(params, field)
            raise NotFound(f'Field {field[:100]!r} of {str(owner)[:100]!r} has no options{reason}')
        if source.needs_session or (source.needs_connection and self.options_in_sessions):
            with self.sessions() as session:
                self._limit_session(session)
                answer = source.answer(session, query)
        elif source.needs_connection:
            # PERF: a Core SELECT needs no ORM session around it; the session cost half as much as the query.
            # Nor a transaction: see reads.py, which also says how a statement timeout fits such reads
            # (per pooled connection, not SET LOCAL, which needs a transaction).
            with read_connection(self.engine) as connection:
                database.limit_reads(connection, self.read_timeout)
                answer = source.answer(connection, query)
        else:
            answer = source.answer(None, query)
        return encoding.dumps_str_keys(answer)

    def _no_options_reason(self, params: Mapping[str, Any], field: str) -> str:
        model = params.get('model')
        if params.get('action') is not None or not isinstance(model, str) or model not in self.catalog:
            return ''
        composite = composite_foreign_key(self.catalog.get(model), field)
        return f': it is one column of the composite foreign key ({composite}), and alone names no row' if composite else ''

    def _limit_session(self, session: Session) -> None:
        """Bound the session's reads; a session with no default bind (binds per model) is left as it is."""
        try:
            connection = session.connection()
        except sa.exc.UnboundExecutionError:
            return
        database.limit_reads(connection, self.read_timeout)

    def _options_source(self, params: Mapping[str, Any], field: str) -> OptionsSource | None:
        action_name = params.get('action')
        if action_name is not None:
            action = self.actions.get(action_name) if isinstance(action_name, str) else None
            if action is None:
                if self.handlers.get_handler(GET_FIELD_OPTIONS) is not None:
                    return None
                raise NotFound(f'Unknown action {str(action_name)[:100]!r}')
            custom = self.field_options.custom('action', action.name, field)
            if custom is not None:
                return custom
            form_field = action.form.get(field)
            if form_field is None and self.handlers.get_handler(GET_FIELD_OPTIONS) is None:
                raise NotFound(f'Action {action.name!r} has no field {field[:100]!r}')
            return form_field.options if form_field is not None else None
        model = params.get('model')
        if isinstance(model, str):
            remembered = self.field_options.remembered(model, field)
            if remembered is not None:
                return remembered
        if model is None or (model == '' and self.handlers.get_handler(GET_FIELD_OPTIONS) is None):
            # Neither said: name both ways of asking, not only the collection. ("" is a string, as the
            # document says: with a handler-style options function, it reaches the handler.)
            raise InvalidParams({'model': 'expected a collection name (or "action": an action\'s name)'})
        collection = self._collection(params.get('model'), allow_handler=True)
        return self.field_options.for_column(collection, field) if collection is not None else None

    def _collection(self, name: Any, *, allow_handler: bool = False) -> Collection | None:
        if name == '' and allow_handler and self.handlers.get_handler(GET_FIELD_OPTIONS) is not None:
            return None  # the document says a string, and "" is one: a handler may know what it means
        if not isinstance(name, str) or not name:
            raise InvalidParams({'model': 'expected a collection name'})
        if name in self.catalog:
            return self.catalog.get(name)
        if allow_handler and self.handlers.get_handler(GET_FIELD_OPTIONS) is not None:
            return None
        raise NotFound(f'Unknown collection {name[:100]!r}')

    def list_records(self, params: Any, identity: Identity, request: Any) -> bytes:
        collection = self._collection(params.get('model'))
        assert collection is not None
        query = parse_query({'limit': params.get('limit', 20), 'offset': params.get('offset')})
        table = collection.table
        order = list(table.primary_key.columns)
        # FROM the model: an ORM statement, which the app's session filters (soft delete…) apply to.
        statement = (sa.select(table).select_from(collection.model)
                     .order_by(*order).limit(query.limit + 1).offset(query.offset))
        with self.sessions() as session:
            self._limit_session(session)
            rows = session.execute(statement).mappings().all()
            labels = listing.related_labels(session, collection, self.field_options, rows[: query.limit])
        # Listed by attribute name: a column mapped as ``state = mapped_column('status_col')`` is ``state``.
        names = {column.key: collection.attribute_name(column) for column in table.columns}
        records = [{names.get(key, key): _listable(value) for key, value in row.items()} for row in rows[: query.limit]]
        return encoding.dumps({
            'pk': collection.attribute_name(collection.pk) if collection.pk is not None else None,
            'columns': listing.describe_columns(collection, self.field_options),
            'records': records,
            'labels': labels,
            'has_more': len(rows) > query.limit,
        })


def _listable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f'<{len(value)} bytes>'
    return value


def _encode_handler_result(result: Any, default: bytes = b'null') -> bytes:
    return default if result is None else encoding.dumps(result)
