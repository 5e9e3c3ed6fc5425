"""What an action's function is called with: form values, loaded records, the context and the session.

Runs inside the executor's transaction (:mod:`jet_sqla.actions`), which owns it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from .catalog import Catalog
from .collection import Collection
from .declaration import Action, ActionContext
from .errors import InvalidParams, RecordsNotFound
from .forms import missing_references
from .runs import ExecuteRequest
from .selection import Selection, keys_of

__all__ = ['Select', 'build_arguments']

#: Loads every record of a "select all" selection, in primary-key order.
Select = Callable[[Session, Action, Selection], list[Any]]


def build_arguments(
    session: Session, request: ExecuteRequest, collection: Collection | None, ids: list[Any],
    values: dict[str, Any], *, catalog: Catalog, select: Select,
) -> dict[str, Any]:
    """Everything the action's function is called with: form values, loaded records, context, session.

    Args:
        select: Loads a "select all" selection (the executor checks its size first).

    Raises:
        InvalidParams: a ForeignKey form value names no row.
        RecordsNotFound: a listed id names no row.
    """
    action = request.action
    references = action.form.references(values)
    loads: list[tuple[Collection, list[Any]]] = [(field.related, [key]) for field, key in references]  # type: ignore[misc]
    if action.for_instance and collection is not None and not request.inverse:
        loads.append((collection, ids))
    try:
        loaded = catalog.load_together(session, loads, lock=action.lock) if loads else []
    except RecordsNotFound:
        # A key that names no row is a bad form value: name its field, like any other.
        missing = missing_references(session, references)
        if missing:
            raise InvalidParams(missing, form=True) from None
        raise
    arguments = dict(values)
    for (field, _), instances in zip(references, loaded):
        arguments[field.name] = instances[0]
    if request.inverse:
        assert collection is not None and collection.pk_attribute and action.instance_parameter
        selection = Selection(collection, ids, inverse=True)
        if request.dry_run and action.background:  # the first chunk only, as the job would cut it
            instances = next(selection.iter_instance_chunks(session, action.chunk_size, lock=action.lock), [])
        else:
            instances = select(session, action, selection)
        ids = keys_of(collection, instances)  # what ran, not what was left out
        arguments[action.instance_parameter] = instances
    elif action.instance_parameter is not None:
        instances = loaded[-1]
        arguments[action.instance_parameter] = instances if action.bulk else instances[0]
    if action.context_parameters:
        context = ActionContext(
            session=session,
            collection=collection.name if collection is not None else None,
            model=collection.model if collection is not None else None,
            ids=ids,
            actor=request.actor,
            request=request.request,
            action=action.name,
            params=request.params,
            dry_run=request.dry_run,
        )
        arguments.update(dict.fromkeys(action.context_parameters, context))
    arguments.update(dict.fromkeys(action.session_parameters, session))
    return arguments
