"""A run before its transaction: the parsed request, its raw ids, and what background runs plug in.

:class:`ExecuteRequest` is what the messages layer hands the executor;
:class:`JobQueue` and :class:`ChunkRun` are how :mod:`jet_sqla.jobs` meets
:class:`jet_sqla.actions.Executor` without the executor knowing any queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy.orm import Session

from .collection import Collection
from .declaration import Action, Actor
from .errors import InvalidParams, TooLarge
from .selection import Selection

__all__ = ['ChunkRun', 'ExecuteRequest', 'JobQueue', 'raw_ids']


class JobQueue(Protocol):
    """Where an accepted background run goes (:class:`jet_sqla.jobs.Jobs`)."""

    def record(self, session: Session, action: Action, collection: Collection | None, selection: Selection | None,
               params: Mapping[str, Any], actor: Actor | None) -> dict[str, Any]:
        """Insert the job and its chunks in ``session``'s transaction; returns ``{"job", "total", "chunks"}``.

        Raises:
            TooLarge: the selection holds more than :attr:`Executor.max_job_ids` records.
        """

    def publish(self, receipt: Mapping[str, Any]) -> None:
        """Hand the committed job to whatever runs its chunks."""


class ChunkRun(Protocol):
    """One delivery of one chunk of a background job, as :meth:`Executor.run_chunk` needs it."""

    action: Action
    collection: Collection | None
    params: Mapping[str, Any]
    actor: Actor | None

    def claim(self, session: Session) -> bool:
        """Lock the chunk's row; False when it is finished already, or its job was cancelled."""

    def ids(self, session: Session) -> list[Any]:
        """The chunk's ids, in primary-key order."""

    def complete(self, session: Session, count: int) -> None:
        """Mark the chunk done, in the transaction of its writes."""

    def fail(self, session: Session, message: str) -> None:
        """Mark the chunk failed, after its transaction was rolled back."""


class ExecuteRequest:
    """An execute_action message, parsed but not yet validated.

    Attributes:
        inverse: "Select all": the action runs on every record of the collection
            except the ids listed (see :mod:`jet_sqla.selection`).
        grant: The JWT's grant for the project, for ``jet_permissions``; ``None``
            for a shared-token request.
    """

    __slots__ = ('action', 'collection', 'params', 'actor', 'request', 'idempotency_key', 'inverse', 'grant',
                 'dry_run', 'undo_of')

    def __init__(
        self,
        action: Action,
        *,
        collection: Any = None,
        params: Mapping[str, Any] | None = None,
        actor: Actor | None = None,
        request: Any = None,
        idempotency_key: str | None = None,
        inverse: bool = False,
        grant: Mapping[str, Any] | None = None,
        dry_run: bool = False,
        undo_of: int | None = None,
    ) -> None:
        self.action = action
        self.collection = collection
        self.params = params if params is not None else {}
        self.actor = actor
        self.request = request
        self.idempotency_key = idempotency_key
        self.inverse = inverse
        self.grant = grant
        #: Run as usual, report the changes, and roll back.
        self.dry_run = dry_run
        #: The log id of the run this one undoes (set by ``undo_run`` only).
        self.undo_of = undo_of


def raw_ids(params: Mapping[str, Any], limit: int) -> list[Any]:
    """The ids of a request: ``ids`` as a list or a comma-separated string, or a single ``id``.

    Raises:
        InvalidParams: ``ids`` is of another type.
        TooLarge: more than ``limit`` ids.
    """
    value = params.get('ids')
    if value is None:
        value = params.get('id')
        if value is None or value == '':
            return []
        value = [value]
    if isinstance(value, str):
        if value.count(',') >= limit:
            raise TooLarge(f'At most {limit} ids per request')
        value = [part.strip() for part in value.split(',') if part.strip()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    elif not isinstance(value, list):
        raise InvalidParams({'ids': 'expected a list of ids or a comma-separated string'})
    if len(value) > limit:
        raise TooLarge(f'At most {limit} ids per request, got {len(value)}')
    return value
