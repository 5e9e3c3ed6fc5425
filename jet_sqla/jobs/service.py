"""Jobs: the one object a Bridge holds for background runs; records, publishes, runs and reports them."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .. import database, encoding
from ..auth import Identity
from ..catalog import Catalog
from ..collection import Collection
from ..declaration import Action, ActionRegistry, Actor
from ..errors import Conflict, DatabaseUnavailable, Forbidden, InvalidParams, NotFound
from ..selection import Selection
from .runner import CeleryRunner, EmbeddedRunner, Runner
from .store import JobStore, StoredChunk

if TYPE_CHECKING:
    from celery import Celery

    from ..actions import Executor

__all__ = ['DEFAULT_QUEUE', 'Jobs']

log = logging.getLogger(__name__)

DEFAULT_QUEUE = 'jet_sqla'
_JOB_ID = re.compile(r'[0-9a-f]{32}')


class Jobs:
    """Background runs of one bridge.

    Args:
        engine: Where the job tables are.
        catalog: The collections.
        actions: The declared actions, to run a chunk by its job's action name.
        executor: Runs each chunk in its transaction.
        broker: A Redis or RabbitMQ URL; ``None`` runs chunks on an embedded thread pool.
        queue: The Celery queue.
        threads: The embedded pool's size.
        context: Entered around each chunk (a Flask app context, when the bridge is mounted on Flask).
    """

    def __init__(self, engine: sa.Engine, catalog: Catalog, actions: ActionRegistry, executor: Executor, *,
                 broker: str | None = None, queue: str = DEFAULT_QUEUE, threads: int = 2,
                 context: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        self.engine = engine
        self.catalog = catalog
        self.actions = actions
        self.executor = executor
        self.broker = broker
        self.queue = queue
        self.store = JobStore(engine)
        self.context = context
        self.runner: Runner
        if broker:
            self.runner = CeleryRunner(self.store, broker, queue, self._make_celery)
        else:
            self.runner = EmbeddedRunner(self.store, self.run_chunk, threads)
        self._started_jobs: set[str] = set()
        self._job_rows: dict[str, sa.Row[Any]] = {}
        self._tables_ready = False
        self._lock = threading.Lock()

    def _make_celery(self) -> Celery:
        from .celery_app import make_app

        return make_app(self, self.broker or '', self.queue)

    def celery(self) -> Celery:
        """The Celery app (``jet-sqla worker`` runs it).

        Raises:
            RuntimeError: no broker is configured.
        """
        if not isinstance(self.runner, CeleryRunner):
            raise RuntimeError('no broker is configured: pass broker= to Bridge, or set JET_SQLA_BROKER_URL')
        return self.runner.app

    def check_ready(self) -> None:
        """Raises RuntimeError, saying what to run, when the job tables do not exist."""
        missing = self.store.missing_tables()
        if missing:
            raise RuntimeError(
                f'background actions need the tables {", ".join(missing)}, which do not exist in '
                f'{self.engine.url.render_as_string(hide_password=True)}; '
                'run `jet-sqla db upgrade --database-url URL` first'
            )

    def ensure_started(self) -> None:
        self.runner.ensure_started()

    # --- the executor's side (actions.JobQueue) ---

    def record(self, session: Session, action: Action, collection: Collection | None, selection: Selection | None,
               params: Mapping[str, Any], actor: Actor | None) -> dict[str, Any]:
        return self.store.record(session, action, collection, selection, params, actor, self.executor.max_job_ids)

    def publish(self, receipt: Mapping[str, Any]) -> None:
        try:
            self.runner.publish(receipt)
        except Exception:
            # The job has committed: the sweep (or, embedded, the next start) publishes it later.
            log.exception('job %s was recorded but could not be published now; the sweep will', receipt['job'])

    def publish_chunks(self, job_id: str) -> int:
        """Publish every queued chunk of a job to the broker (a worker does this for each new job); returns how many."""
        assert isinstance(self.runner, CeleryRunner)
        return sum(len(run) for run in self.runner.publish_chunks(job_id))

    def waiting_messages(self) -> int:
        """How many messages wait in the broker's queue (the sweep's check before republishing)."""
        assert isinstance(self.runner, CeleryRunner)
        return self.runner.waiting_messages()

    def run_chunks(self, job_id: str, seqs: Sequence[int]) -> dict[str, int]:
        """Run a run of chunks of one job, one after another, each in its own transaction.

        Returns:
            How many chunks were done, skipped (done already, or cancelled) and failed.

        Raises:
            DatabaseUnavailable: deliver the run again later; its chunks that committed are skipped then.
        """
        outcomes = {'done': 0, 'skipped': 0, 'failed': 0}
        for seq in seqs:
            outcome = self.run_chunk(job_id, seq)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    def run_chunk(self, job_id: str, seq: int) -> str:
        """Run one chunk; returns ``'done'``, ``'skipped'`` or ``'failed'``.

        Raises:
            DatabaseUnavailable: deliver it again later.
        """
        with self.context():
            return self._run_chunk(job_id, seq)

    def _run_chunk(self, job_id: str, seq: int) -> str:
        try:
            job = self._job_row(job_id)
        except sa.exc.SQLAlchemyError as error:
            if database.is_unavailable(error):
                raise DatabaseUnavailable('The database is unavailable') from error
            raise
        if job is None:
            log.warning('chunk %d of job %s: no such job; skipped', seq, job_id)
            return 'skipped'
        action = self.actions.get(job.action)
        if action is None:
            log.error('job %s runs %r, which this worker does not declare; chunk %d left queued',
                      job_id, job.action, seq)
            return 'skipped'
        collection = self.catalog.get(job.collection) if job.collection is not None else None
        if job.started_at is None and job_id not in self._started_jobs:
            try:
                self.store.mark_started(job_id)
            except sa.exc.SQLAlchemyError as error:
                if database.is_unavailable(error):
                    raise DatabaseUnavailable('The database is unavailable') from error
                raise
            with self._lock:
                if len(self._started_jobs) > 10_000:  # only saves a statement: forgetting is harmless
                    self._started_jobs.clear()
                self._started_jobs.add(job_id)
        return self.executor.run_chunk(StoredChunk(job, seq, action, collection))

    def _job_row(self, job_id: str) -> sa.Row[Any] | None:
        # PERF: a job's row does not change after it is recorded (its marks aside, which a chunk
        # reads under its lock instead): one read per job and process, not one per chunk.
        job = self._job_rows.get(job_id)
        if job is None:
            job = self.store.job(job_id)
            if job is not None:
                with self._lock:
                    if len(self._job_rows) >= 1000:
                        self._job_rows.clear()
                    self._job_rows[job_id] = job
        return job

    # --- messages ---

    def _job(self, params: Mapping[str, Any]) -> sa.Row[Any]:
        job_id = params.get('job')
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise InvalidParams({'job': 'expected a job id: the 32 hexadecimal digits execute_action answered'})
        if not self._tables_ready:
            # A bridge without background actions may not have the tables: then it has no jobs either.
            self._tables_ready = not self.store.missing_tables()
            if not self._tables_ready:
                raise NotFound(f'No job {job_id!r}: this database has no job tables')
        job = self.store.job(job_id)
        if job is None:
            raise NotFound(f'No job {job_id!r}')
        return job

    def _progress(self, job: sa.Row[Any]) -> dict[str, Any]:
        collection = self.catalog.get(job.collection) if job.collection in self.catalog else None
        return self.store.progress(job, collection)

    def get_job(self, params: Any, identity: Identity, request: Any) -> bytes:
        """``get_job {"job": id}``: anyone who may list actions may read a job."""
        self.ensure_started()
        return encoding.dumps(self._progress(self._job(params)))

    def cancel_job(self, params: Any, identity: Identity, request: Any) -> bytes:
        """``cancel_job {"job": id}``: only someone who may run the action may cancel it."""
        self.ensure_started()
        job = self._job(params)
        action = self.actions.get(job.action)
        if identity.read_only or (action is not None and not action.permits(identity.actor)):
            raise Forbidden(f'You may not cancel a job of {job.action!r}')
        progress = self._progress(job)
        if progress['status'] in ('succeeded', 'failed'):
            raise Conflict(f'Job {job.id} has already finished ({progress["status"]})')
        self.store.cancel(job.id)
        log.info('job cancelled', extra={'job': job.id, 'action': job.action})
        return encoding.dumps(self._progress(self._job(params)))
