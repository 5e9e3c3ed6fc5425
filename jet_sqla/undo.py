"""Undo: revert a run from its change history, in one transaction, or write nothing.

The undo is itself an action run by the :class:`~jet_sqla.actions.Executor`
(named ``undo_run``), so it gets the same transaction, retries and log row as
any run, and its own changes are captured: undoing an undo re-applies the run.

Inside that transaction it locks every row the run touched (collection by
collection in name order, rows in primary-key order, as actions lock), checks
that each still holds what the run left there, and only then writes the old
values back, walking the run's changes backwards.
"""

from __future__ import annotations

import datetime
import decimal
import math
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, Session

from . import audit, encoding
from .audit import action_log
from .catalog import Catalog
from .changes import jsonable, row_key
from .coerce import Coercer, coercer_for_python_type
from .collection import Collection
from .declaration import Action, ActionContext
from .errors import Conflict, MessageError, NotFound
from .forms import Form

__all__ = ['UNDO_ACTION', 'UndoConflict', 'check_undoable', 'load_run', 'revert', 'root_action', 'undo_action']

#: The name undo runs are logged under.
UNDO_ACTION = 'undo_run'
CHUNK_SIZE = 500
_ABSENT = object()


class UndoConflict(Conflict):
    """Rows changed since the run: nothing was written. ``conflicts`` lists each row and column."""

    code = 'undo_conflict'

    def __init__(self, conflicts: Sequence[Mapping[str, Any]]) -> None:
        self.conflicts = list(conflicts)
        shown = len(self.conflicts)
        super().__init__(f'{shown} of the values this run wrote {"have" if shown != 1 else "has"} changed since; '
                         'nothing was undone')

    def details(self) -> dict[str, Any]:
        return {'conflicts': self.conflicts}


def load_run(connection: sa.Connection | Session, run_id: int, *, lock: bool = False) -> sa.Row[Any]:
    """The log row of ``run_id``.

    Raises:
        NotFound: there is no such run.
    """
    statement = sa.select(action_log).where(action_log.c.id == run_id)
    if lock:
        statement = statement.with_for_update()
    row = connection.execute(statement).first()
    if row is None:
        raise NotFound(f'No run {run_id}')
    return row


def check_undoable(connection: sa.Connection | Session, row: sa.Row[Any], catalog: Catalog) -> list[dict[str, Any]]:
    """The changes of the run ``row``, once it is sure they can be reverted exactly.

    Raises:
        MessageError: a 400 saying why not (each reason has its own ``code``).
    """
    if row.outcome != 'success':
        raise MessageError(f'Run {row.id} did not change anything ({row.outcome}); only a successful run '
                           'can be undone', code='not_undoable')
    if row.changes is None:
        raise MessageError(f'Run {row.id} has no change history (it ran without history); it cannot be undone',
                           code='not_undoable')
    if row.undo_of is not None:
        original = load_run(connection, row.undo_of)
        if original.undo_of is not None:
            raise MessageError(f'Run {row.id} is an undo of an undo; undo run {original.undo_of} '
                               'is the one to take back', code='undo_of_undo')
    undone_by = connection.execute(
        sa.select(action_log.c.id).where(action_log.c.undo_of == row.id)
    ).scalar()
    if undone_by is not None:
        raise MessageError(f'Run {row.id} was already undone by run {undone_by}', code='already_undone')
    document = encoding.loads(row.changes)
    if document.get('truncated'):
        raise MessageError(f'Run {row.id} changed more rows than its history itemized; it cannot be undone',
                           code='truncated_run')
    changes: list[dict[str, Any]] = document['changes']
    for change in changes:
        if change['op'] not in ('insert', 'update', 'delete'):
            raise MessageError(f'Run {row.id} ran a bulk statement on {change["collection"]} ({change["rows"]} '
                               'rows) whose rows were not itemized; it cannot be undone', code='bulk_run')
        if change['collection'] not in catalog:
            raise MessageError(f'Run {row.id} changed {change["collection"]!r}, which is not a collection of '
                               'this bridge; it cannot be undone', code='not_undoable')
        restored = (
            [pair[0] for pair in change['fields'].values()] if change['op'] == 'update'
            else change['fields'].values() if change['op'] == 'delete' else []
        )
        if any(_unrecorded(value) for value in restored):
            raise MessageError(f'Run {row.id} changed secret or binary columns of {change["collection"]} '
                               f'{change["id"]}, whose old values are not recorded; it cannot be undone',
                               code='not_undoable')
    return changes


def _unrecorded(value: Any) -> bool:
    return value == audit.REDACTED or (isinstance(value, str) and value.startswith('<') and value.endswith(' bytes>'))


def undo_action(catalog: Catalog) -> Action:
    """The action every undo runs as: ``params`` is ``{"run": <log id>}``."""

    def undo_run(ctx: ActionContext) -> dict[str, Any]:
        run_id = int(ctx.params['run'])
        # Locked: two undos of one run queue here, and the second finds it undone.
        row = load_run(ctx.session, run_id, lock=True)
        changes = check_undoable(ctx.session, row, catalog)
        revert(ctx.session, catalog, changes)
        return {'undone': run_id}

    return Action(
        name=UNDO_ACTION, function=undo_run, collections=(), for_instance=False, bulk=False, form=Form([]),
        lock=False, allow=None, timeout=None, label='Undo', description='Revert a run from its change history',
        instance_parameter=None, context_parameters=['ctx'], session_parameters=[],
    )


def revert(session: Session, catalog: Catalog, changes: Sequence[Mapping[str, Any]]) -> None:
    """Check every row still holds what ``changes`` left, then write back what it replaced.

    Raises:
        UndoConflict: listing every row and column that changed since; nothing was written.
    """
    expected: dict[tuple[str, str], Any] = {}
    ids: dict[str, dict[tuple[str, str], Any]] = {}
    for change in changes:
        key = row_key(change['collection'], change['id'])
        if change['op'] == 'delete':
            expected[key] = _ABSENT
        elif change['op'] == 'insert':
            expected[key] = dict(change['fields'])
        else:
            state = expected.get(key)
            state = {} if state is None or state is _ABSENT else state
            state.update({column: pair[1] for column, pair in change['fields'].items()})
            expected[key] = state
        ids.setdefault(change['collection'], {})[key] = change['id']
    current: dict[tuple[str, str], Any] = {}
    for name in sorted(ids):
        current.update(_lock_rows(session, catalog.get(name), ids[name]))
    conflicts = []
    for key, wanted in expected.items():
        collection, shown_id = key[0], ids[key[0]][key]
        instance = current.get(key)
        if wanted is _ABSENT:
            if instance is not None:
                conflicts.append({'collection': collection, 'id': shown_id, 'column': None,
                                  'reason': 'the run deleted this row, and it exists again'})
            continue
        if instance is None:
            conflicts.append({'collection': collection, 'id': shown_id, 'column': None,
                              'reason': 'this row was deleted since'})
            continue
        mapper: Mapper[Any] = sa.inspect(type(instance))
        for column, value in wanted.items():
            actual = getattr(instance, column)
            if not _same(mapper, column, value, actual):
                conflicts.append({'collection': collection, 'id': shown_id, 'column': column,
                                  'expected': value, 'actual': _shown(actual)})
    if conflicts:
        raise UndoConflict(conflicts)
    _write_back(session, catalog, changes, current)


def _write_back(session: Session, catalog: Catalog, changes: Sequence[Mapping[str, Any]],
                current: dict[tuple[str, str], Any]) -> None:
    """Walk the changes backwards; flush whenever the kind of write changes, so rows go out in reverse order."""
    previous_op = None
    for change in reversed(changes):
        op = change['op']
        if previous_op is not None and op != previous_op:
            session.flush()
        previous_op = op
        key = row_key(change['collection'], change['id'])
        model = catalog.get(change['collection']).model
        mapper: Mapper[Any] = sa.inspect(model)
        if op == 'update':
            instance = current[key]
            for column, pair in change['fields'].items():
                setattr(instance, column, _decode(mapper, column, pair[0]))
        elif op == 'insert':
            session.delete(current.pop(key))
        else:
            instance = mapper.class_manager.new_instance()
            for column, value in change['fields'].items():
                setattr(instance, column, _decode(mapper, column, value))
            session.add(instance)
            current[key] = instance
    session.flush()


def _lock_rows(session: Session, collection: Collection, wanted: Mapping[tuple[str, str], Any]) -> dict[tuple[str, str], Any]:
    """Load ``FOR UPDATE`` every row of ``wanted`` that exists, in primary-key order, chunk by chunk."""
    mapper: Mapper[Any] = sa.inspect(collection.model)
    pk_columns = list(mapper.primary_key)
    decoders = [_decoder(column) for column in pk_columns]
    keys: dict[Any, tuple[str, str]] = {}
    for key, shown in wanted.items():
        parts = shown if isinstance(shown, list) else [shown]
        keys[tuple(decode(part) for decode, part in zip(decoders, parts, strict=True))] = key
    ordered = sorted(keys)
    attributes = [getattr(collection.model, mapper.get_property_by_column(column).key) for column in pk_columns]
    found: dict[tuple[str, str], Any] = {}
    for start in range(0, len(ordered), CHUNK_SIZE):
        chunk = ordered[start:start + CHUNK_SIZE]
        condition = (attributes[0].in_([identity[0] for identity in chunk]) if len(attributes) == 1
                     else sa.tuple_(*attributes).in_(chunk))
        statement = (sa.select(collection.model).where(condition).order_by(*attributes).with_for_update()
                     .execution_options(populate_existing=True))
        for instance in session.scalars(statement):
            identity = tuple(mapper.primary_key_from_instance(instance))
            if identity in keys:
                found[keys[identity]] = instance
    return found


def _decoder(column: Any) -> Coercer:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        python_type = str
    if not isinstance(python_type, type) or python_type in (dict, list):
        return lambda value: value  # JSON columns hold the JSON itself
    coercer = coercer_for_python_type(python_type)
    return lambda value: None if value is None else coercer(value)


def _column(mapper: Mapper[Any], key: str) -> Any:
    return mapper.attrs[key].columns[0]


def _decode(mapper: Mapper[Any], key: str, value: Any) -> Any:
    return _decoder(_column(mapper, key))(value)


def _shown(value: Any) -> Any:
    return jsonable(value)


def _same(mapper: Mapper[Any], key: str, recorded: Any, actual: Any) -> bool:
    """Whether the database still holds what the run wrote, allowing for how each database stores it.

    The run recorded the Python value it assigned; a database may store it
    rounded to the column's scale, without its time zone, or without
    fractional seconds. Those differences are not someone else's change.
    """
    if _shown(actual) == recorded or _unrecorded(recorded):
        return True
    if recorded is None or actual is None:
        return False
    try:
        wanted = _decode(mapper, key, recorded)
    except (ValueError, TypeError):
        return False
    if isinstance(actual, float) or isinstance(wanted, float):
        return math.isclose(float(wanted), float(actual), rel_tol=1e-9)
    if isinstance(actual, (int, decimal.Decimal)) and not isinstance(actual, bool):
        return decimal.Decimal(str(wanted)) == decimal.Decimal(str(actual))
    if isinstance(actual, datetime.datetime) and isinstance(wanted, datetime.datetime):
        wanted, actual = _naive_utc(wanted), _naive_utc(actual)
        if actual.microsecond == 0:  # a column without fractional seconds
            wanted = wanted.replace(microsecond=0)
        return bool(wanted == actual)
    return bool(wanted == actual)


def _naive_utc(moment: datetime.datetime) -> datetime.datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def root_action(connection: sa.Connection | Session, row: sa.Row[Any]) -> str:
    """The action whose permission an undo needs: the original run's, through any undo runs."""
    while row.undo_of is not None:
        row = load_run(connection, row.undo_of)
    return str(row.action)

