"""Change history: the ``get_run``, ``list_runs`` and ``undo_run`` messages.

The history is the action log (:mod:`jet_sqla.audit`): with ``audit=True``,
each successful run's row also holds the changes it made, written in the run's
own transaction. This module reads it, and hands undos to the
:class:`~jet_sqla.actions.Executor` like any other run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from . import encoding
from .actions import Executor
from .audit import action_log
from .catalog import Catalog
from .changes import jsonable
from .coerce import coerce_int
from .declaration import ActionRegistry, Actor
from .errors import Forbidden, InvalidParams, MessageError, NotFound
from .runs import ExecuteRequest
from .undo import UNDO_ACTION, load_run, root_action, undo_action

__all__ = ['DEFAULT_LIMIT', 'MAX_LIMIT', 'RunHistory']

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

#: What a run summary holds; ``get_run`` adds the changes.
_SUMMARY = (action_log.c.id, action_log.c.created_at, action_log.c.action, action_log.c.collection,
            action_log.c.ids, action_log.c.actor, action_log.c.outcome, action_log.c.error,
            action_log.c.duration_ms, action_log.c.undo_of)


class RunHistory:
    """Answers the history messages of one bridge.

    Args:
        engine: Where the action log lives.
        catalog: The collections (for the ``id`` filter and for undo).
        actions: The declared actions, whose ``allow`` also decides who may read and undo their runs.
        executor: Runs undos.
        enabled: ``audit=True`` with history; otherwise every message says how to turn it on.
    """

    def __init__(self, engine: sa.Engine, catalog: Catalog, actions: ActionRegistry, executor: Executor, *,
                 enabled: bool) -> None:
        self.engine = engine
        self.catalog = catalog
        self.actions = actions
        self.executor = executor
        self.enabled = enabled
        self.undo = undo_action(catalog)

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise MessageError('Change history needs the bridge to be built with audit=True (and history on)',
                               code='history_off')

    def get_run(self, params: Mapping[str, Any], actor: Actor | None) -> bytes:
        """One run: its log row and, when kept, its changes and counts.

        Raises:
            NotFound: no such run. Forbidden: the actor may not run its action.
        """
        self._check_enabled()
        run_id = _run_id(params)
        with self.engine.connect() as connection:
            row = load_run(connection, run_id)
            undone_by = connection.execute(
                sa.select(action_log.c.id).where(action_log.c.undo_of == run_id)
            ).scalar()
        if not self._may_read(row.action, actor):
            raise Forbidden(f'You may not see runs of {row.action!r}')
        described = _summary(row)
        described['params'] = encoding.loads(row.params) if row.params else {}
        described['undone_by'] = undone_by
        if row.changes is not None:
            document = encoding.loads(row.changes)
            described['changes'] = document['changes']
            described['counts'] = document['counts']
            described['truncated'] = bool(document.get('truncated'))
        else:
            described['changes'] = None
        return encoding.dumps(described)

    def list_runs(self, params: Mapping[str, Any], actor: Actor | None) -> bytes:
        """Runs, newest first, filtered by ``action``, ``collection`` and ``id``; paged by ``limit`` and ``after``."""
        self._check_enabled()
        errors: dict[str, str] = {}
        limit = _bounded(params.get('limit'), DEFAULT_LIMIT, 1, MAX_LIMIT, 'limit', errors) or DEFAULT_LIMIT
        after = _bounded(params.get('after'), None, 1, 2**62, 'after', errors)
        action, collection = params.get('action'), params.get('collection')
        for name, value in (('action', action), ('collection', collection)):
            if value is not None and not isinstance(value, str):
                errors[name] = 'expected a string'
        row_id = params.get('id')
        if row_id is not None and errors.get('collection') is None:
            if not collection or collection not in self.catalog:
                errors['collection'] = 'name the collection of the record given as id'
            else:
                try:
                    row_id = jsonable(self.catalog.get(collection).coerce_id(row_id))
                except ValueError as error:
                    errors['id'] = str(error)
        if errors:
            raise InvalidParams(errors)
        readable = [declared.name for declared in self.actions if declared.permits(actor)] + [UNDO_ACTION]
        statement = sa.select(*_SUMMARY).where(action_log.c.action.in_(readable))
        if action is not None:
            statement = statement.where(action_log.c.action == action)
        if row_id is not None:
            # The changes are stored in a fixed key order, so a row's entry starts the same way every time.
            fragment = encoding.dumps({'collection': collection, 'id': row_id}).decode()[:-1] + ',"op"'
            statement = statement.where(action_log.c.changes.contains(fragment, autoescape=True))
        elif collection is not None:
            statement = statement.where(action_log.c.collection == collection)
        if after is not None:
            statement = statement.where(action_log.c.id < after)
        statement = statement.order_by(action_log.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as connection:
            rows = connection.execute(statement).all()
        runs = [_summary(row) for row in rows[:limit]]
        return encoding.dumps({'runs': runs, 'has_more': len(rows) > limit,
                               'next': runs[-1]['run'] if len(rows) > limit else None})

    def undo_run(self, params: Mapping[str, Any], actor: Actor | None, request: Any = None) -> bytes:
        """Revert a run: a run of its own, through the executor.

        Raises:
            NotFound, Forbidden, MessageError: no such run, not allowed, or not undoable.
            UndoConflict: rows changed since; nothing was written.
        """
        self._check_enabled()
        run_id = _run_id(params)
        with self.engine.connect() as connection:
            row = load_run(connection, run_id)
            original = root_action(connection, row)
        declared = self.actions.get(original)
        if declared is None:
            raise MessageError(f'{original!r} is no longer declared; only runs of declared actions can be undone',
                               code='not_undoable')
        if not declared.permits(actor):
            raise Forbidden(f'You may not undo runs of {original!r}')
        return self.executor.execute(ExecuteRequest(self.undo, params={'run': run_id}, actor=actor,
                                                    request=request, undo_of=run_id))

    def _may_read(self, action: str, actor: Actor | None) -> bool:
        declared = self.actions.get(action)
        return declared is None or declared.permits(actor)


def _summary(row: Any) -> dict[str, Any]:
    return {
        'run': row.id,
        'action': row.action,
        'collection': row.collection,
        'ids': encoding.loads(row.ids) if row.ids else [],
        'actor': encoding.loads(row.actor) if row.actor else None,
        'outcome': row.outcome,
        'error': row.error,
        'time': jsonable(row.created_at),
        'duration_ms': row.duration_ms,
        'undo_of': row.undo_of,
    }


def _run_id(params: Mapping[str, Any]) -> int:
    raw = params.get('run')
    if raw is None or raw == '':
        raise InvalidParams({'run': 'this field is required'})
    try:
        run_id = coerce_int(raw)
    except ValueError as error:
        raise InvalidParams({'run': str(error)}) from None
    if run_id < 1:
        raise NotFound(f'No run {run_id}')
    return run_id


def _bounded(raw: Any, default: int | None, low: int, high: int, name: str, errors: dict[str, str]) -> int | None:
    if raw is None or raw == '':
        return default
    try:
        number = coerce_int(raw)
    except ValueError as error:
        errors[name] = str(error)
        return default
    if not low <= number <= high:
        errors[name] = f'must be between {low} and {high}'
        return default
    return number
