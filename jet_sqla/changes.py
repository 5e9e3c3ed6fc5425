"""Unit-of-work capture: what a run's transaction changed, row by row.

A :class:`ChangeCapture` is attached to one session for one run, and only when
someone will read what it records: a dry run, or an audited bridge that keeps
change history. Otherwise no listener is attached and a run pays nothing.

It listens to three session events:

- ``before_flush`` reads the old values SQLAlchemy does not know yet (a column
  assigned while expired, or assigned a SQL expression), with one SELECT per
  such row, through the session's connection;
- ``after_flush`` itemizes every row the flush wrote, from the unit of work's
  own list and each attribute's history, while both still describe the flush;
- ``do_orm_execute`` counts the rows of bulk ``insert``/``update``/``delete``
  statements run through the session, which no unit of work itemizes.

Each change is ``{"collection", "id", "op", "fields"}``. Values are encoded
as results are (Decimal and datetimes as strings, enums as their values), and
the values of secret-looking columns are replaced by ``[redacted]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.sql.elements import ClauseElement

from . import audit, encoding
from .catalog import Catalog
from .errors import NotFound

__all__ = ['DEFAULT_MAX_CHANGES', 'OPS', 'ChangeCapture', 'binary_marker', 'jsonable', 'row_key']

#: How many rows a capture itemizes before it only counts.
DEFAULT_MAX_CHANGES = 10_000
#: The ops of itemized rows.
OPS = ('insert', 'update', 'delete')

_BULK_OPS = {'insert': 'bulk_insert', 'update': 'bulk_update', 'delete': 'bulk_delete'}
# jet_sqla's own bookkeeping (the action log) is not the action's work.
_OWN_TABLES = frozenset(audit.metadata.tables.values())
_ABSENT = object()


def jsonable(value: Any) -> Any:
    """``value`` as it appears in a JSON result: the same encoding as :mod:`jet_sqla.encoding`."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return binary_marker(len(value))
    try:
        return encoding.json_scalar(value)
    except TypeError:
        pass
    try:
        return encoding.loads(encoding.dumps(value))  # JSON columns: dicts and lists, at any depth
    except TypeError:
        return str(value)


def binary_marker(size: int) -> str:
    """What stands for a binary value in a change: its size, as the console's listing shows it."""
    return f'<{size} bytes>'


def row_key(collection: str, row_id: Any) -> tuple[str, str]:
    """A hashable key of one row of a change list (ids may be lists for composite keys)."""
    return collection, encoding.dumps(row_id).decode()


class _Model:
    """What a capture needs to know about one mapped class, worked out once per capture."""

    __slots__ = ('collection', 'column_set', 'columns', 'order', 'secret', 'single_pk')

    def __init__(self, collection: str, order: int, mapper: Mapper[Any]) -> None:
        self.collection = collection
        self.order = order
        self.columns: tuple[str, ...] = tuple(prop.key for prop in mapper.column_attrs)
        self.column_set = frozenset(self.columns)
        self.secret = frozenset(key for key in self.columns if audit.is_secret(key))
        self.single_pk = len(mapper.primary_key) == 1


class ChangeCapture:
    """The changes of one run's transaction, itemized in flush order.

    Args:
        catalog: Names each row's collection.
        max_changes: Rows itemized at most; past them only ``counts`` grow.
    """

    def __init__(self, catalog: Catalog, *, max_changes: int = DEFAULT_MAX_CHANGES) -> None:
        self.catalog = catalog
        self.max_changes = max_changes
        self.changes: list[dict[str, Any]] = []
        self.counts: dict[str, dict[str, int]] = {}
        self.truncated = False
        self._models: dict[type[Any], _Model] = {}
        self._table_order: dict[sa.Table, int] = {}
        # Per flush: values read before it, and the columns it sets to SQL expressions.
        self._old: dict[InstanceState[Any], dict[str, Any]] = {}
        self._computed: dict[InstanceState[Any], list[str]] = {}

    @contextmanager
    def attached(self, session: Session) -> Iterator[None]:
        """Listen to ``session`` for the block; the listeners go when it ends.

        An app's session factory may hand out the same session again (a
        ``scoped_session``): a capture must not outlive its run on it.
        """
        listeners = (('before_flush', self._before_flush), ('after_flush', self._after_flush),
                     ('do_orm_execute', self._on_execute))
        for name, listener in listeners:
            event.listen(session, name, listener)
        try:
            yield
        finally:
            for name, listener in listeners:
                event.remove(session, name, listener)

    def report(self) -> dict[str, Any]:
        """``{"changes", "counts"}``, with ``"truncated": true`` past ``max_changes``."""
        document: dict[str, Any] = {'changes': self.changes, 'counts': self.counts}
        if self.truncated:
            document['truncated'] = True
        return document

    # -- recording -------------------------------------------------------------------------------

    def _record(self, model: _Model, row_id: Any, op: str, fields: dict[str, Any]) -> None:
        counts = self.counts.get(model.collection)
        if counts is None:
            counts = self.counts[model.collection] = dict.fromkeys(OPS, 0)
        counts[op] = counts.get(op, 0) + 1
        if len(self.changes) >= self.max_changes:
            self.truncated = True
            return
        if model.secret:
            for key in model.secret.intersection(fields):
                fields[key] = [audit.REDACTED, audit.REDACTED] if op == 'update' else audit.REDACTED
        self.changes.append({'collection': model.collection, 'id': row_id, 'op': op, 'fields': fields})

    def _model(self, state: InstanceState[Any]) -> _Model:
        model = self._models.get(state.class_)
        if model is None:
            mapper = state.mapper
            try:
                collection = self.catalog.get(state.class_).name
            except NotFound:
                table = mapper.local_table
                collection = table.fullname if isinstance(table, sa.Table) else mapper.class_.__name__
            model = self._models[state.class_] = _Model(collection, self._order_of(mapper), mapper)
        return model

    def _order_of(self, mapper: Mapper[Any]) -> int:
        table = mapper.local_table
        if not isinstance(table, sa.Table):
            return 0
        if table not in self._table_order:
            for index, sorted_table in enumerate(table.metadata.sorted_tables):
                self._table_order.setdefault(sorted_table, index)
        return self._table_order.get(table, 0)

    # -- session events --------------------------------------------------------------------------

    def _before_flush(self, session: Session, flush_context: UOWTransaction, instances: Any) -> None:
        self._old.clear()
        self._computed.clear()
        deleted = session.deleted
        for obj in [*session.dirty, *deleted]:
            state: InstanceState[Any] = instance_state(obj)
            committed = state.committed_state
            deleting = obj in deleted
            if state.key is None or not (committed or deleting):
                continue
            model = self._model(state)
            unknown: list[str] = []
            computed: list[str] = []
            known: dict[str, Any] = {}
            values = state.dict
            # PERF: only the assigned columns are looked at; a run of 1,000 updates assigns one each.
            for key, old in committed.items():
                if key not in model.column_set:
                    continue
                if old is NO_VALUE:  # assigned without being loaded first
                    unknown.append(key)
                if isinstance(values.get(key), ClauseElement):
                    # The flush expires it, and its committed value with it: keep the old value now.
                    computed.append(key)
                    if old is not NO_VALUE:
                        known[key] = old
            if deleting:
                # A deleted row's unloaded columns: needed to insert it again.
                unknown.extend(key for key in model.columns if key not in values and key not in committed)
            if computed:
                self._computed[state] = computed
            if unknown:
                known.update(_read_columns(session, state, unknown))
            if known:
                self._old[state] = known

    def _after_flush(self, session: Session, flush_context: UOWTransaction) -> None:
        # The unit of work's order: table by table, parents first, a table's updates before its
        # inserts (in the order they were added); then deletes, children first.
        saves: list[tuple[Any, ...]] = []
        deletes: list[tuple[Any, ...]] = []
        for state, (is_delete, list_only) in flush_context.states.items():
            if list_only:
                continue
            model = self._model(state)
            if is_delete:
                deletes.append((-model.order, model.collection, 0, _sort_key(state), model, state))
            elif state.key is not None:
                if state.committed_state or state in self._computed:  # else the flush wrote nothing for it
                    saves.append((model.order, model.collection, 0, _sort_key(state), model, state))
            else:
                saves.append((model.order, model.collection, 1, getattr(state, 'insert_order', 0) or 0, model, state))
        saves.sort(key=_order)
        deletes.sort(key=_order)
        for *_, model, state in saves:
            if state.key is None:
                self._insert(model, state)
            else:
                self._update(session, model, state)
        for *_, model, state in deletes:
            self._delete(model, state)
        self._old.clear()
        self._computed.clear()

    def _on_execute(self, orm_execute_state: ORMExecuteState) -> Any:
        if orm_execute_state.is_insert:
            op = 'insert'
        elif orm_execute_state.is_update:
            op = 'update'
        elif orm_execute_state.is_delete:
            op = 'delete'
        else:
            return None  # a SELECT: nothing to record, and nothing to change in how it runs
        table = getattr(orm_execute_state.statement, 'table', None)
        if table in _OWN_TABLES:
            return None
        result = orm_execute_state.invoke_statement()
        parameters = orm_execute_state.parameters
        if isinstance(parameters, list) and parameters:
            rows = len(parameters)  # an executemany: one row per parameter set
        else:
            rowcount = getattr(result, 'rowcount', -1)
            rows = rowcount if isinstance(rowcount, int) and rowcount >= 0 else 0
        collection = self._table_name(table)
        bulk = _BULK_OPS[op]
        counts = self.counts.setdefault(collection, dict.fromkeys(OPS, 0))
        counts[bulk] = counts.get(bulk, 0) + rows
        if len(self.changes) >= self.max_changes:
            self.truncated = True
        else:
            self.changes.append({'collection': collection, 'op': bulk, 'rows': rows})
        return result

    def _table_name(self, table: Any) -> str:
        if isinstance(table, sa.Table):
            found = self.catalog.for_table(table)
            return found.name if found is not None else table.fullname
        return str(getattr(table, 'name', table))

    # -- rows ------------------------------------------------------------------------------------

    def _insert(self, model: _Model, state: InstanceState[Any]) -> None:
        values = state.dict
        fields = {key: jsonable(values[key]) for key in model.columns if key in values
                  and not isinstance(values[key], ClauseElement)}
        self._record(model, _row_id(model, state), 'insert', fields)

    def _update(self, session: Session, model: _Model, state: InstanceState[Any]) -> None:
        committed = state.committed_state
        computed = self._computed.get(state)
        if not committed and not computed:
            return
        old_read = self._old.get(state, {})
        current = _read_columns(session, state, computed) if computed else {}
        fields: dict[str, Any] = {}
        keys = [key for key in committed if key in model.column_set]
        keys.extend(key for key in current if key not in committed)
        if len(keys) > 1:
            keys.sort(key=model.columns.index)
        for key in keys:
            old = committed.get(key, NO_VALUE)
            if old is NO_VALUE:
                old = old_read.get(key)
            new = current[key] if key in current else state.dict.get(key)
            old_json, new_json = jsonable(old), jsonable(new)
            if old_json != new_json:
                fields[key] = [old_json, new_json]
        if fields:
            self._record(model, _row_id(model, state), 'update', fields)

    def _delete(self, model: _Model, state: InstanceState[Any]) -> None:
        committed = state.committed_state
        old_read = self._old.get(state, {})
        fields: dict[str, Any] = {}
        for key in model.columns:
            if key in committed and committed[key] is not NO_VALUE:
                fields[key] = jsonable(committed[key])
            elif key in state.dict:
                fields[key] = jsonable(state.dict[key])
            elif key in old_read:
                fields[key] = jsonable(old_read[key])
        self._record(model, _row_id(model, state), 'delete', fields)


def _sort_key(state: InstanceState[Any]) -> Any:
    """A persistent row's primary key, as the unit of work sorts it."""
    return state.key[1] if state.key is not None else ()


def _order(item: tuple[Any, ...]) -> tuple[Any, ...]:
    return item[:4]


def _row_id(model: _Model, state: InstanceState[Any]) -> Any:
    identity = state.key[1] if state.key is not None else state.mapper.primary_key_from_instance(state.obj())
    ids = [jsonable(part) for part in identity]
    return ids[0] if model.single_pk else ids


def _read_columns(session: Session, state: InstanceState[Any], keys: Iterable[str]) -> dict[str, Any]:
    """Read ``keys`` of one row from the database, through the session's connection.

    A Core SELECT on the connection neither autoflushes nor loads into the
    session, so it is safe inside flush events.
    """
    mapper = state.mapper
    keys = list(keys)
    columns = [mapper.attrs[key].columns[0].label(key) for key in keys]
    identity = state.key[1] if state.key is not None else mapper.primary_key_from_instance(state.obj())
    condition = sa.and_(*[column == value for column, value in zip(mapper.primary_key, identity, strict=True)])
    row = session.connection().execute(sa.select(*columns).where(condition)).mappings().first()
    return dict(row) if row is not None else {}

