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
from typing import Any

from sqlalchemy.orm import Session

from . import database, encoding
from .arguments import build_arguments
from .audit import AuditEntry, AuditLog, KeyClaimed, fingerprint, key_owner
from .catalog import Catalog
from .changes import DEFAULT_MAX_CHANGES, ChangeCapture
from .collection import Collection
from .collector import GC_PAUSE_MIN_IDS, paused_gc
from .declaration import Action
from .errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    IdempotencyNeedsAudit,
    InvalidParams,
    KeyBelongsToAnother,
    MessageError,
    OutcomeUnknown,
    TooLarge,
)
from .forms import missing_references
from .line_handler import info_line
from .outcomes import as_jet_error, result_body, with_run
from .permissions import JetPermissions
from .runs import ChunkRun, ExecuteRequest, JobQueue, raw_ids
from .selection import Selection, check_exist, keys_of, load_selected

__all__ = ['Executor']

log = logging.getLogger(__name__)

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
            failure = as_jet_error(error, action.name)
            entry.outcome = 'rejected' if isinstance(failure, (InvalidParams, Forbidden, TooLarge)) else 'error'
            entry.error = failure.message
            entry.duration_ms = (time.perf_counter() - started) * 1000
            if self.audit is not None:
                self.audit.record_failure(entry)
            info_line(log, 'action failed', {
                'action': action.name, 'collection': entry.collection, 'ids': len(entry.ids),
                'outcome': entry.outcome, 'code': failure.code, 'duration_ms': round(entry.duration_ms, 2)})
            if failure is error:
                raise
            raise failure from error
        if request.dry_run and self.audit is not None:
            entry.outcome = 'dry_run'
            self.audit.record_failure(entry)  # its transaction was rolled back: logged apart, like a failure
        info_line(log, 'action ran', {'action': action.name, 'collection': entry.collection, 'ids': len(entry.ids),
                                      'outcome': entry.outcome, 'duration_ms': round(entry.duration_ms or 0, 2)})
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
            accepting = request.action.background and not request.dry_run
            attempt_once = self._accept_job if accepting else self._attempt
            try:
                if accepting or len(ids) < GC_PAUSE_MIN_IDS:
                    return attempt_once(request, collection, ids, values, entry, stage)
                # PERF: a large run holds the collector paused until its session has closed (see collector.py).
                with paused_gc():
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
                        return response if request.action.background else with_run(response, log_id)
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
        if not (action.needs_session or self.audit is not None or entry.idempotency_key is not None
                or request.dry_run):
            # Without a session there is nothing to load and nothing to hand out: the form is all.
            result = action.function(**values)
            stage[0] = 'returned'
            return _succeeded(entry, result_body(action, result), started)
        # Captured only when someone reads it: without a dry run or history, no listener is attached.
        capture = ChangeCapture(self.catalog, max_changes=self.max_changes) if (
            request.dry_run or self.history) else None
        with self._transaction(commit=not request.dry_run) as session, \
                (capture.attached(session) if capture is not None else nullcontext()):
            if entry.idempotency_key is not None:
                assert self.audit is not None
                self.audit.claim(session, entry)
            if action.timeout is not None:
                database.apply_timeout(session, action.timeout)
            arguments = build_arguments(session, request, collection, ids, values, catalog=self.catalog,
                                        select=self._select)
            if request.inverse and collection is not None and action.instance_parameter is not None:
                entry.ids = keys_of(collection, arguments[action.instance_parameter])  # what ran, not what was left out
            result = action.function(**arguments)
            stage[0] = 'returned'
            session.flush()
            report = capture.report() if capture is not None else None
            if report is not None and request.dry_run and action.background:
                report = {**report, 'first_chunk_only': True, 'chunk_size': action.chunk_size}
            body = _succeeded(entry, result_body(action, result, report if request.dry_run else None), started)
            if report is not None:
                entry.changes = encoding.dumps(report)
            if request.dry_run:
                stage[0] = 'rolling back'  # leaving the block rolls back
                return body
            if self.audit is not None:
                self.audit.record_success(session, entry)
            stage[0] = 'committing'  # leaving the block commits
        return with_run(body, entry.log_id)

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
                    check_exist(session, collection, ids)
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
        finished is skipped. Deadlocks before the function returned are retried
        as for a request (past ``retries``, the chunk is delivered again later);
        one after it returned fails the chunk, and the function is not called
        again. Any other failure rolls the chunk back whole and marks it failed.

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
                    result = action.function(**build_arguments(session, request, chunk.collection, ids, values,
                                                                    catalog=self.catalog, select=self._select))
                    stage = 'returned'
                    entry.response = result_body(action, result)
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
                failure = as_jet_error(error, action.name)
                # A deadlock after the function returned is not a reason to call it again, as for a
                # request: the chunk is failed with the request's "try again". Only a database that is
                # gone, or locks still contended before the function returned, send it back to the queue.
                if isinstance(failure, DatabaseUnavailable) and not (
                        stage == 'returned' and database.is_retryable(error)):
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
            unrecorded = as_jet_error(error, action.name)
            if isinstance(unrecorded, DatabaseUnavailable):
                raise unrecorded from error
            raise
        if self.audit is not None:
            self.audit.record_failure(entry)
        return 'failed'
    def _select(self, session: Session, action: Action, selection: Selection) -> list[Any]:
        return load_selected(session, selection, lock=action.lock, max_ids=self.max_ids)

    @contextmanager
    def _transaction(self, *, commit: bool = True) -> Iterator[Session]:
        with self.sessions() as session, session.begin() as transaction:
            yield session
            if not commit:
                transaction.rollback()


def _succeeded(entry: AuditEntry, body: bytes, started: float) -> bytes:
    """Note a run's success in its log entry, and return its response body."""
    entry.outcome = 'success'
    entry.duration_ms = (time.perf_counter() - started) * 1000
    entry.response = body
    return body
