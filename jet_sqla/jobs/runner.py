"""What runs the chunks: a small thread pool in the serving process, or Celery workers.

With no broker configured, :class:`EmbeddedRunner` runs chunks on threads of
the process that accepted the job, and resumes every unfinished job when it
starts in a new process (after a restart, or in each forked server worker).
With a broker, :class:`CeleryRunner` publishes one task that fans the job out
into Celery tasks on the workers, each running a run of consecutive chunks
(:func:`group_runs`), each chunk in its own transaction.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import DatabaseUnavailable
from .store import JobStore

if TYPE_CHECKING:
    from celery import Celery

__all__ = ['MIN_TASKS', 'TASK_RECORDS', 'CeleryRunner', 'EmbeddedRunner', 'Runner', 'group_runs']

log = logging.getLogger(__name__)

#: Seconds before a chunk that could not reach the database is tried again, in embedded mode.
EMBEDDED_RETRY_DELAY = 5.0

#: About how many records one Celery task covers: its chunks run one after another in one pool process.
TASK_RECORDS = 10_000
#: A job is split into at least this many tasks (when it has as many chunks), to spread it over the workers.
MIN_TASKS = 16

RunChunk = Callable[[str, int], str]


class Runner(Protocol):
    def publish(self, receipt: Mapping[str, Any]) -> None: ...

    def ensure_started(self) -> None: ...


class EmbeddedRunner:
    """Background chunks on a thread pool inside the serving process.

    Args:
        store: The job tables.
        run_chunk: Runs one chunk by job id and number.
        threads: Pool size: how many chunks run at once in this process.
    """

    def __init__(self, store: JobStore, run_chunk: RunChunk, threads: int = 2) -> None:
        self.store = store
        self.run_chunk = run_chunk
        self.threads = threads
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()
        self._pending: set[tuple[str, int]] = set()

    def ensure_started(self) -> None:
        """Start the pool in this process, once, and resume the jobs a restart left unfinished."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # Threads started before a fork do not exist in the child: start this process's own.
            # Daemon threads: a server stopping does not wait for a long job; an interrupted
            # chunk is rolled back by the database and runs again when the job resumes.
            self._queue = queue.SimpleQueue()
            self._pending = set()
            self._pid = os.getpid()
            for number in range(self.threads):
                threading.Thread(target=self._work, name=f'jet-sqla-job-{number}', daemon=True).start()
            threading.Thread(target=self._resume, name='jet-sqla-job-resume', daemon=True).start()

    def publish(self, receipt: Mapping[str, Any]) -> None:
        self.ensure_started()
        job_id = receipt['job']
        for seq in range(receipt['chunks']):
            self._submit(job_id, seq)
        self.store.mark_published(job_id)

    def _resume(self) -> None:
        try:
            unfinished = self.store.unfinished()
        except Exception:
            log.exception('could not look for unfinished background jobs; they resume on the next start')
            return
        if unfinished:
            log.info('resuming %d unfinished background chunks', len(unfinished))
        for job_id, seq in unfinished:
            self._submit(job_id, seq)

    def _submit(self, job_id: str, seq: int) -> None:
        key = (job_id, seq)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queue.put(key)

    def _work(self) -> None:
        while True:
            job_id, seq = self._queue.get()
            self._run(job_id, seq)

    def _run(self, job_id: str, seq: int) -> None:
        retry = False
        try:
            self.run_chunk(job_id, seq)
        except DatabaseUnavailable as error:
            # The database is gone, or a deadlock persisted past the chunk's retries: not a failure.
            log.warning('chunk %d of job %s did not run (%s); trying again in %gs',
                        seq, job_id, error.message, EMBEDDED_RETRY_DELAY)
            retry = True
        except Exception:
            log.exception('chunk %d of job %s crashed outside its action', seq, job_id)
        finally:
            with self._lock:
                self._pending.discard((job_id, seq))
        if retry:
            timer = threading.Timer(EMBEDDED_RETRY_DELAY, self._submit, (job_id, seq))
            timer.daemon = True
            timer.start()


class CeleryRunner:
    """Publishes jobs to Celery workers through a broker (Redis or RabbitMQ).

    Args:
        store: The job tables.
        broker: The broker URL.
        queue: The queue the chunks go to, and the workers read.
        make_app: Builds the Celery app; called on first use only, so that
            Celery is imported only when a broker is configured.
    """

    def __init__(self, store: JobStore, broker: str, queue: str, make_app: Callable[[], Celery]) -> None:
        self.store = store
        self.broker = broker
        self.queue = queue
        self._make_app = make_app
        self._app: Celery | None = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Celery:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._make_app()
        return self._app

    def ensure_started(self) -> None:
        """Nothing to start: the workers run elsewhere."""

    def publish(self, receipt: Mapping[str, Any]) -> None:
        """One message for the whole job: a worker fans it out, so accepting stays quick at any size."""
        from .celery_app import PUBLISH_JOB

        self.app.send_task(PUBLISH_JOB, args=[receipt['job']], queue=self.queue)
        self.store.mark_published(receipt['job'])

    def publish_chunks(self, job_id: str, *, task_records: int | None = None,
                       min_tasks: int = MIN_TASKS) -> list[list[int]]:
        """Publish the queued chunks of ``job_id`` as tasks that each run a run of chunks; returns the runs.

        Args:
            job_id: The job.
            task_records: About how many records one task covers
                (``JET_SQLA_TASK_RECORDS``, default 10,000).
            min_tasks: The job is split into at least this many tasks when it has that many chunks,
                so that every worker process gets a share of a small job.
        """
        from .celery_app import RUN_CHUNKS

        if task_records is None:
            task_records = task_records_setting()
        runs = group_runs(self.store.queued_chunks(job_id), task_records, min_tasks)
        task = self.app.tasks.get(RUN_CHUNKS)
        with self.app.producer_or_acquire() as producer:
            for seqs in runs:
                if task is not None:
                    task.apply_async(args=[job_id, seqs], queue=self.queue, producer=producer)
                else:
                    self.app.send_task(RUN_CHUNKS, args=[job_id, seqs], queue=self.queue, producer=producer)
        return runs


    def waiting_messages(self) -> int:
        """How many messages wait in the queue, not yet taken by a worker (0 when the broker has no such queue)."""
        with self.app.connection_for_write() as connection:
            channel = connection.channel()
            try:
                return int(channel.queue_declare(queue=self.queue, passive=True).message_count)
            except connection.channel_errors:
                return 0  # Redis has no key for an empty queue; RabbitMQ may have lost a non-durable one
            finally:
                with contextlib.suppress(Exception):  # a channel the broker closed on the error
                    channel.close()


def task_records_setting() -> int:
    value = os.environ.get('JET_SQLA_TASK_RECORDS', '').strip()
    return max(1, int(value)) if value else TASK_RECORDS


def group_runs(chunks: Sequence[tuple[int, int]], task_records: int, min_tasks: int = MIN_TASKS) -> list[list[int]]:
    """Split ``(seq, records)`` chunks, in order, into runs of consecutive chunks, one task each.

    A run holds at most ``ceil(len(chunks) / min_tasks)`` chunks, and stops at the chunk that
    brings it to ``task_records`` records; it always holds at least one chunk.

    Why runs: a task's hand-off (main process to pool process, acknowledgement, next fetch) is
    paid once per run instead of once per chunk, and a job sends far fewer broker messages,
    while each chunk keeps its own transaction and done mark. On a loaded 2-core machine this
    did not measurably change the throughput (BENCHMARKS.md, section 7): there the per-chunk
    COMMIT and claim dominate. ``JET_SQLA_TASK_RECORDS=1`` gives one task per chunk.
    """
    most = max(1, math.ceil(len(chunks) / max(1, min_tasks)))
    runs: list[list[int]] = []
    current: list[int] = []
    records = 0
    for seq, size in chunks:
        current.append(seq)
        records += size
        if len(current) >= most or records >= task_records:
            runs.append(current)
            current, records = [], 0
    if current:
        runs.append(current)
    return runs
