"""Action execution: every run's transaction happens here, and only here.

One execute_action reads top to bottom in :meth:`Executor.execute`: check who
may run it, parse the ids, validate the form, then, inside one transaction,
claim the idempotency key, load every record the action needs in a
deadlock-safe order, call the function, encode its result and log the run.
The transaction commits only when all of that succeeded; a dry run goes the
same way and is always rolled back. When someone will read them (a dry run,
or change history), the run's row changes are captured on its session by
:class:`~jet_sqla.changes.ChangeCapture`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import Session

from . import database, encoding
from .audit import AuditEntry, AuditLog, KeyClaimed, fingerprint, key_owner
from .catalog import Catalog, Collection
from .changes import DEFAULT_MAX_CHANGES, ChangeCapture
from .declaration import Action, ActionContext, Actor
from .errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    IdempotencyNeedsAudit,
    InternalError,
    InvalidParams,
    JetError,
    KeyBelongsToAnother,
    LockNotGranted,
    MessageError,
    OutcomeUnknown,
    RecordsNotFound,
    ServerBusy,
    StatementTimeout,
    TooLarge,
    ValueRefused,
)
from .forms import missing_references
from .permissions import JetPermissions
from .selection import Selection

__all__ = ['ChunkRun', 'ExecuteRequest', 'Executor', 'JobQueue']

log = logging.getLogger(__name__)


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


class Executor:
    """Runs actions: one transaction each, retried on deadlocks, logged when audited.

    Args:
        catalog: The collections.
        sessions: Makes the session of each run.
        audit: Logs runs and stores idempotent responses; ``None`` when off.
        max_ids: The most ids one request may name.
        max_job_ids: The most ids one background run may name.
        jobs: Records and publishes background runs; set by the Bridge.
        retries: How many times a deadlocked run is tried again before the
            function has returned.
        permissions: Checks Jet's own permissions of a JWT's grant; ``None`` when off.
        history: Store each audited run's changes in its log row.
        max_changes: Rows a capture itemizes at most.
    """

    def __init__(
        self,
        catalog: Catalog,
        sessions: Callable[[], Session],
        *,
        audit: AuditLog | None = None,
        max_ids: int = 100_000,
        retries: int = 3,
        max_job_ids: int = 10_000_000,
        jobs: JobQueue | None = None,
        permissions: JetPermissions | None = None,
        history: bool = False,
        max_changes: int = DEFAULT_MAX_CHANGES,
    ) -> None:
        self.catalog = catalog
        self.sessions = sessions
        self.audit = audit
        self.max_ids = max_ids
        self.retries = retries
        self.max_job_ids = max_job_ids
        self.jobs = jobs
        self.permissions = permissions
        self.history = history and audit is not None
        self.max_changes = max_changes

    def execute(self, request: ExecuteRequest) -> bytes:
        """Run ``request`` and return the JSON response body.

        Raises:
            JetError: every failure a client should hear about, already rolled back.
        """
        action = request.action
        started = time.perf_counter()
        entry = AuditEntry(
            action=action.name,
            collection=None,
            ids=[],
            params=request.params,
            actor=request.actor,
            # A dry run writes nothing, so there is nothing for a key to guard.
            idempotency_key=None if request.dry_run else request.idempotency_key,
            undo_of=request.undo_of,
        )
        try:
            if not action.permits(request.actor):
                raise Forbidden(f'You may not run {action.name!r}')
            if request.dry_run and not action.preview:
                raise MessageError(f'{action.name!r} cannot be previewed: it was declared with preview=False',
                                   code='preview_refused')
            collection = action.collection_for(request.collection)
            entry.collection = collection.name if collection is not None else None
            if self.permissions is not None:
                self.permissions.check(request.grant, collection)
            ids = self._ids(action, collection, request.params, request.inverse)
            if request.dry_run and action.background and action.for_instance and not request.inverse:
                ids = sorted(ids)[:action.chunk_size]  # the first chunk, as the job would cut it
            entry.ids = ids
            values = action.form.validate(request.params)
            if entry.idempotency_key is not None:
                if self.audit is None:
                    raise IdempotencyNeedsAudit()
                hashed = {**request.params, 'inverseIds': True} if request.inverse else request.params
                entry.request_hash = fingerprint(action.name, entry.collection, ids, hashed)
            body = self._run_with_retries(request, collection, ids, values, entry)
        except Exception as error:
            failure = _as_jet_error(error, action.name)
            entry.outcome = 'rejected' if isinstance(failure, (InvalidParams, Forbidden, TooLarge)) else 'error'
            entry.error = failure.message
            entry.duration_ms = (time.perf_counter() - started) * 1000
            if self.audit is not None:
                self.audit.record_failure(entry)
            log.info(
                'action failed', extra={'action': action.name, 'collection': entry.collection,
                                        'ids': len(entry.ids), 'outcome': entry.outcome, 'code': failure.code,
                                        'duration_ms': round(entry.duration_ms, 2)},
            )
            if failure is error:
                raise
            raise failure from error
        if request.dry_run and self.audit is not None:
            entry.outcome = 'dry_run'
            self.audit.record_failure(entry)  # its transaction was rolled back: logged apart, like a failure
        log.info(
            'action ran', extra={'action': action.name, 'collection': entry.collection, 'ids': len(entry.ids),
                                 'outcome': entry.outcome, 'duration_ms': round(entry.duration_ms or 0, 2)},
        )
        return body

    def _ids(self, action: Action, collection: Collection | None, params: Mapping[str, Any],
             inverse: bool = False) -> list[Any]:
        raw = raw_ids(params, self.max_job_ids if action.background else self.max_ids)
        if inverse and not (collection is not None and action.for_instance and action.bulk):
            raise InvalidParams({'inverseIds': '"select all" needs a bulk record action; '
                                              f'{action.name!r} is not one'})
        if collection is None or not action.for_instance:
            return []
        ids = collection.coerce_ids(raw)
        if inverse:
            return ids  # the ids to leave out; none means every record
        if not ids:
            raise InvalidParams({'ids': 'select at least one record'})
        if not action.bulk and len(ids) > 1:
            raise InvalidParams({'ids': 'this action runs on one record at a time'})
        return ids

    def _run_with_retries(
        self, request: ExecuteRequest, collection: Collection | None, ids: list[Any],
        values: dict[str, Any], entry: AuditEntry,
    ) -> bytes:
        attempt = 0
        while True:
            attempt += 1
            stage = ['running']  # then 'returned' when the function has returned, 'committing' at the COMMIT
            # A dry run of a background action runs its first chunk here, as a request, and rolls it back.
            attempt_once = self._accept_job if request.action.background and not request.dry_run else self._attempt
            try:
                return attempt_once(request, collection, ids, values, entry, stage)
            except KeyClaimed:
                stored = self.audit.stored(entry.idempotency_key) if self.audit and entry.idempotency_key else None
                if stored is not None:
                    request_hash, response, log_id, owner = stored
                    if owner is not None and owner != key_owner(entry.actor):
                        # Another actor's key: its response is not this caller's to see.
                        log.warning('idempotency key of %s reused by %s for %r; refused', owner,
                                    key_owner(entry.actor), request.action.name)
                        raise KeyBelongsToAnother('This idempotency key belongs to another user; '
                                                  'use a key of your own') from None
                    if request_hash != entry.request_hash:
                        raise Conflict('This idempotency key was used for a different request') from None
                    if response is not None:
                        entry.outcome = 'replayed'
                        # A job's answer names its job, not a run: its chunks are the runs.
                        return response if request.action.background else _with_run(response, log_id)
                if attempt > self.retries:
                    raise Conflict('This idempotency key is in use by a run that has not finished') from None
            except Exception as error:
                if stage[0] == 'committing' and database.is_disconnect(error):
                    # The COMMIT went out and no answer came back: it may have been applied.
                    log.error('connection lost while committing %r; its outcome is unknown', request.action.name)
                    raise OutcomeUnknown(
                        f'The database connection was lost while {request.action.name!r} was committing; '
                        'it may or may not have been applied: check before running it again'
                    ) from error
                if stage[0] != 'running' or attempt > self.retries or not database.is_retryable(error):
                    raise
                log.warning('retrying %r after %s (attempt %d)', request.action.name, type(error).__name__, attempt)
            time.sleep(0.005 * attempt)

    def _attempt(
        self, request: ExecuteRequest, collection: Collection | None, ids: list[Any],
        values: dict[str, Any], entry: AuditEntry, stage: list[str],
    ) -> bytes:
        action = request.action
        started = time.perf_counter()
        # PERF: a run that loads nothing, is handed no session and logs nothing runs
        # outside any transaction: an empty one (Session, BEGIN, COMMIT) cost more
        # than all the rest of such a request.
        # Captured only when someone reads it: without a dry run or history, no listener is attached.
        capture = ChangeCapture(self.catalog, max_changes=self.max_changes) if (
            request.dry_run or self.history) else None
        transactional = (action.needs_session or self.audit is not None or entry.idempotency_key is not None
                         or request.dry_run)
        with (self._transaction(commit=not request.dry_run) if transactional else nullcontext()) as session, \
                ExitStack() as capturing:
            if capture is not None and session is not None:
                capturing.enter_context(capture.attached(session))
            if entry.idempotency_key is not None:
                assert self.audit is not None and session is not None
                self.audit.claim(session, entry)
            if action.timeout is not None:
                assert session is not None
                database.apply_timeout(session, action.timeout)
            # Without a session there is nothing to load and nothing to hand out: the form is all.
            arguments = self._arguments(session, request, collection, ids, values) if session is not None else dict(values)
            if request.inverse and collection is not None and action.instance_parameter is not None:
                entry.ids = _keys(collection, arguments[action.instance_parameter])  # what ran, not what was left out
            result = action.function(**arguments)
            stage[0] = 'returned'
            if session is not None:
                session.flush()
            report = capture.report() if capture is not None else None
            if report is not None and request.dry_run and action.background:
                report = {**report, 'first_chunk_only': True, 'chunk_size': action.chunk_size}
            body = _result_body(action, result, report if request.dry_run else None)
            entry.outcome = 'success'
            entry.duration_ms = (time.perf_counter() - started) * 1000
            entry.response = body
            if report is not None:
                entry.changes = encoding.dumps(report)
            if request.dry_run:
                stage[0] = 'rolling back'  # leaving the block rolls back
                return body
            if self.audit is not None:
                assert session is not None
                self.audit.record_success(session, entry)
            stage[0] = 'committing'  # leaving the block commits
        return _with_run(body, entry.log_id)

    def _accept_job(
        self, request: ExecuteRequest, collection: Collection | None, ids: list[Any],
        values: dict[str, Any], entry: AuditEntry, stage: list[str],
    ) -> bytes:
        """Check what a run would refuse, record the job, commit, and only then publish its chunks."""
        if self.jobs is None:
            raise MessageError(f'{request.action.name!r} runs in the background, and this bridge has no job runner')
        with self._transaction() as session:
            if entry.idempotency_key is not None:
                assert self.audit is not None
                self.audit.claim(session, entry)
            bad_references = missing_references(session, request.action.form.references(values))
            if bad_references:
                raise InvalidParams(bad_references)
            selection = None
            if collection is not None and request.action.for_instance:
                selection = Selection(collection, ids, inverse=request.inverse)
                if not request.inverse:
                    _check_exist(session, collection, ids)
            receipt = self.jobs.record(session, request.action, collection, selection, request.params,
                                       request.actor)
            body = encoding.dumps({'result': True, **receipt})
            entry.outcome = 'queued'
            entry.response = body
            if entry.idempotency_key is not None:
                assert self.audit is not None
                self.audit.record_success(session, entry)
            stage[0] = 'committing'
        # Published after the COMMIT: a worker never receives a chunk it cannot find. Should this
        # process die right here, the workers' sweep publishes the job's chunks instead.
        self.jobs.publish(receipt)
        return body

    def run_chunk(self, chunk: ChunkRun) -> str:
        """Run one chunk of a background job, in a transaction of its own.

        The chunk's done mark commits with its writes; a chunk that is already
        finished is skipped. Deadlocks are retried as for a request; any other
        failure rolls the chunk back whole and marks it failed.

        Returns:
            ``'done'``, ``'skipped'`` or ``'failed'``.

        Raises:
            DatabaseUnavailable: nothing could be recorded; deliver the chunk again later.
        """
        action = chunk.action
        started = time.perf_counter()
        collection_name = chunk.collection.name if chunk.collection is not None else None
        request = ExecuteRequest(action, collection=collection_name, params=chunk.params, actor=chunk.actor)
        entry = AuditEntry(action=action.name, collection=collection_name, ids=[], params=chunk.params,
                           actor=chunk.actor)
        attempt = 0
        while True:
            attempt += 1
            stage = 'running'
            try:
                values = action.form.validate(chunk.params)
                with self._transaction() as session, ExitStack() as capturing:
                    if not chunk.claim(session):
                        return 'skipped'
                    if action.timeout is not None:
                        database.apply_timeout(session, action.timeout)
                    ids = chunk.ids(session) if action.for_instance else []
                    entry.ids = ids
                    if action.for_instance and not ids:  # every record of the range was excluded, or is gone
                        chunk.complete(session, 0)
                        return 'done'
                    # A chunk is a run: with history on, its log row holds its changes like any other.
                    capture = ChangeCapture(self.catalog, max_changes=self.max_changes) if self.history else None
                    if capture is not None:
                        capturing.enter_context(capture.attached(session))
                    result = action.function(**self._arguments(session, request, chunk.collection, ids, values))
                    stage = 'returned'
                    entry.response = _result_body(action, result)
                    session.flush()
                    if capture is not None:
                        entry.changes = encoding.dumps(capture.report())
                        capturing.close()
                    entry.outcome = 'success'
                    entry.duration_ms = (time.perf_counter() - started) * 1000
                    if self.audit is not None:
                        self.audit.record_success(session, entry)
                    chunk.complete(session, len(ids))
                return 'done'
            except Exception as error:
                if stage == 'running' and attempt <= self.retries and database.is_retryable(error):
                    log.warning('retrying a chunk of %r after %s (attempt %d)', action.name,
                                type(error).__name__, attempt)
                    time.sleep(0.005 * attempt)
                    continue
                failure = _as_jet_error(error, action.name)
                if isinstance(failure, DatabaseUnavailable):
                    raise failure from error
                break
        entry.outcome = 'error'
        entry.error = failure.message
        entry.duration_ms = (time.perf_counter() - started) * 1000
        try:
            with self._transaction() as session:
                chunk.fail(session, failure.message)
        except Exception as error:
            # The chunk stays queued: delivered again, it runs (and maybe fails) again.
            unrecorded = _as_jet_error(error, action.name)
            if isinstance(unrecorded, DatabaseUnavailable):
                raise unrecorded from error
            raise
        if self.audit is not None:
            self.audit.record_failure(entry)
        return 'failed'
    def _select(self, session: Session, action: Action, selection: Selection) -> list[Any]:
        """The instances of a selection, in primary-key order, loaded chunk by chunk.

        Raises:
            TooLarge: more records than one request may run on.
            InvalidParams: the selection is empty.
        """
        count = selection.count(session)
        self.check_selection_size(action, count)
        if count == 0:
            raise InvalidParams({'ids': 'no record is selected: every record of the collection is excluded'})
        return [instance for chunk in selection.iter_instance_chunks(session, lock=action.lock) for instance in chunk]

    def check_selection_size(self, action: Action, count: int) -> None:
        """The one check of how many records a request may run on; a background run does not call it.

        Raises:
            TooLarge: ``count`` is over ``max_ids``.
        """
        if count > self.max_ids:
            raise TooLarge(f'"Select all" chose {count} records of this collection; one request may run on '
                           f'at most {self.max_ids}')

    @contextmanager
    def _transaction(self, *, commit: bool = True) -> Iterator[Session]:
        with self.sessions() as session, session.begin() as transaction:
            yield session
            if not commit:
                transaction.rollback()

    def _arguments(
        self, session: Session, request: ExecuteRequest, collection: Collection | None,
        ids: list[Any], values: dict[str, Any],
    ) -> dict[str, Any]:
        action = request.action
        references = action.form.references(values)
        loads: list[tuple[Collection, list[Any]]] = [(field.related, [key]) for field, key in references]  # type: ignore[misc]
        if action.for_instance and collection is not None and not request.inverse:
            loads.append((collection, ids))
        try:
            loaded = self.catalog.load_together(session, loads, lock=action.lock) if loads else []
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
                instances = self._select(session, action, selection)
            ids = _keys(collection, instances)  # what ran, not what was left out
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


def _check_exist(session: Session, collection: Collection, ids: list[Any]) -> None:
    """Raise RecordsNotFound for listed ids with no row; reads keys only, in few statements."""
    assert collection.pk is not None
    found: set[Any] = set()
    for start in range(0, len(ids), _EXISTENCE_BATCH):
        batch = ids[start : start + _EXISTENCE_BATCH]
        found.update(session.scalars(sa.select(collection.pk).where(collection.pk.in_(batch))))
    if len(found) < len(ids):
        raise RecordsNotFound(collection.name, [value for value in ids if value not in found])


#: Ids per existence check of a background run: far more than a chunk, as only keys come back,
#: so that accepting a job never costs a statement per chunk (and within SQLite's 32,766 parameters).
_EXISTENCE_BATCH = 10_000


def _keys(collection: Collection, instances: list[Any]) -> list[Any]:
    assert collection.pk_attribute is not None
    return [getattr(instance, collection.pk_attribute) for instance in instances]


def _result_body(action: Action, result: Any, dry_run: Mapping[str, Any] | None = None) -> bytes:
    """``{"result": true, ...}`` with the action's dict merged in, encoded before the commit.

    A dry run's changes come last, so that no key the function returns can hide them.
    """
    if result is not None and not isinstance(result, Mapping):
        raise TypeError(f'action {action.name!r} returned {type(result).__name__}; return a dict or None')
    if dry_run is not None:
        return encoding.dumps({'result': True, **(result or {}), 'dry_run': True, **dry_run})
    if result is None:
        return b'{"result":true}'
    return encoding.dumps({'result': True, **result})


def _with_run(body: bytes, log_id: int | None) -> bytes:
    """The response with ``"run": <log id>`` added; the stored response leaves it out, as it is not known yet."""
    if log_id is None or not body.endswith(b'}'):
        return body
    return body[:-1] + b',"run":' + str(log_id).encode() + b'}'



def _as_jet_error(error: BaseException, action: str) -> JetError:
    """The client-facing form of any failure of a run; unexpected ones are logged with their traceback."""
    if isinstance(error, JetError):
        return error
    if database.is_timeout(error):
        return StatementTimeout(f'{action!r} ran past its timeout and was rolled back')
    if database.is_retryable(error):
        return DatabaseUnavailable(f'{action!r} could not take its locks; it was rolled back, try again')
    if database.is_lock_wait_timeout(error):
        # Another run holds the row: the database is fine, and this run wrote nothing.
        log.warning('action %r was not granted a lock in time: %s', action, type(error).__name__)
        return LockNotGranted(f'{action!r} was not granted a lock in time (another run holds it); '
                              'it was rolled back and nothing was written')
    if database.is_pool_timeout(error):
        log.warning('action %r found no free database connection', action)
        return ServerBusy(f'The server is busy: every database connection is in use; {action!r} did not run, '
                          'try again')
    if isinstance(error, exc.IntegrityError):
        log.warning('action %r violated a constraint: %s', action, error.orig)
        return Conflict(f'{action!r} conflicts with existing data; it was rolled back')
    if isinstance(error, exc.DataError):
        # A value the database cannot store (too long, out of range): almost always the operator's input.
        log.warning('action %r wrote a value the database refused: %s', action, error.orig)
        column = database.refused_column(error)
        where = f' in column {column}' if column else ''
        return ValueRefused(f'{action!r} tried to store a value the database refuses{where} (too long, out of '
                            'range or malformed); it was rolled back', column)
    if database.is_unavailable(error):
        log.error('database unavailable while running %r: %s', action, type(error).__name__)
        return DatabaseUnavailable('The database is unavailable; nothing was changed, try again later')
    log.error('action %r crashed', action, exc_info=error)
    return InternalError('The action failed; it was rolled back. The server log has the details.')
