"""The Celery app of a bridge's background jobs: its tasks, their delivery guarantees, and the sweep.

Imported only when a broker is configured; the rest of jet_sqla never imports Celery.

Delivery: tasks are acknowledged late (after they ran), and a task whose
worker process died is put back on the queue (``reject_on_worker_lost``), so
a chunk interrupted by a crash runs again elsewhere. Its transaction never
committed, so the database rolled it back; a chunk that did commit is found
done and skipped when it is delivered again. A chunk whose database was
unreachable is retried later, with a growing delay.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import Celery, signals

from ..errors import DatabaseUnavailable

if TYPE_CHECKING:
    from .service import Jobs

__all__ = ['PUBLISH_JOB', 'RUN_CHUNK', 'RUN_CHUNKS', 'Sweep', 'make_app']

log = logging.getLogger(__name__)

RUN_CHUNK = 'jet_sqla.run_chunk'
#: One task for a run of chunks of one job, each chunk still its own transaction (see CeleryRunner.publish_chunks).
RUN_CHUNKS = 'jet_sqla.run_chunks'
PUBLISH_JOB = 'jet_sqla.publish_job'


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name, '')
    return float(value) if value.strip() else default


def make_app(jobs: Jobs, broker: str, queue: str) -> Celery:
    """The Celery app that publishes and runs ``jobs``' chunks."""
    app = Celery('jet_sqla', broker=broker, set_as_current=False)
    visibility_timeout = int(_seconds('JET_SQLA_VISIBILITY_TIMEOUT', 3600))
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task that raised anyway (a bug of jet_sqla's, not of the action: action failures are
        # recorded and return normally) is acknowledged rather than redelivered forever.
        task_acks_on_failure_or_timeout=True,
        # One chunk at a time per worker process: a slow chunk never holds others back in a prefetch buffer.
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=queue,
        task_serializer='json',
        accept_content=['json'],
        broker_connection_retry_on_startup=True,
        # Redis only: how long a chunk taken by a worker that vanished (its machine died) waits before
        # it is delivered again, and how often the surviving workers look for such chunks (every tenth
        # of it, between 1 and 10 s). RabbitMQ redelivers as soon as the dead worker's connection drops.
        broker_transport_options={
            'visibility_timeout': visibility_timeout,
            'unacked_restore_interval': max(1, min(10, visibility_timeout // 10)),
            'unacked_restore_throttle': 1,
        },
        worker_hijack_root_logger=False,
    )

    # shared=False: each app's tasks run its own bridge's jobs; a process holding several apps (tests,
    # two bridges) must not hand one app's messages to another's closure.
    @app.task(name=RUN_CHUNK, bind=True, max_retries=None, shared=False)  # type: ignore[untyped-decorator]
    def run_chunk(task: Any, job_id: str, seq: int) -> str:
        try:
            return jobs.run_chunk(job_id, seq)
        except DatabaseUnavailable as error:
            raise task.retry(exc=error, countdown=min(60, 2 ** min(task.request.retries, 6))) from error

    @app.task(name=RUN_CHUNKS, bind=True, max_retries=None, shared=False)  # type: ignore[untyped-decorator]
    def run_chunks(task: Any, job_id: str, seqs: list[int]) -> dict[str, int]:
        # Acknowledged after the whole run. Redelivered (a killed worker, an unreachable database),
        # it runs the run again: the chunks that committed are found done and skipped.
        try:
            return jobs.run_chunks(job_id, seqs)
        except DatabaseUnavailable as error:
            raise task.retry(exc=error, countdown=min(60, 2 ** min(task.request.retries, 6))) from error

    @app.task(name=PUBLISH_JOB, shared=False)  # type: ignore[untyped-decorator]
    def publish_job(job_id: str) -> int:
        return jobs.publish_chunks(job_id)

    def after_fork(**kwargs: Any) -> None:
        # A forked pool process opens its own connections; the parent's stay the parent's.
        jobs.engine.dispose(close=False)

    def start_sweep(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, 'app', app) is app:
            Sweep(jobs).start()

    signals.worker_process_init.connect(after_fork, weak=False)
    signals.worker_ready.connect(start_sweep, weak=False)
    return app


class Sweep(threading.Thread):
    """Publishes the chunks of jobs that were recorded but never published, and of jobs the broker lost.

    A job is never published when the process that accepted it died between
    its COMMIT and its publish. Every worker runs a sweep, in its main
    process, every ``JET_SQLA_SWEEP_INTERVAL`` seconds (30), for jobs older
    than ``JET_SQLA_SWEEP_GRACE`` seconds (60).

    A broker can also lose messages it had accepted: a Redis restarted
    without persistence, or failed over to an empty replica. So, at most once
    every ``JET_SQLA_SWEEP_STALL`` seconds (300), the sweep publishes again
    the queued chunks of every job none of whose chunks finished for that
    long, provided the queue holds no message waiting (which those chunks
    could be behind). Two workers may publish the same job at once: a chunk
    delivered twice runs once.
    """

    def __init__(self, jobs: Jobs) -> None:
        super().__init__(name='jet-sqla-sweep', daemon=True)
        self.jobs = jobs
        self.interval = _seconds('JET_SQLA_SWEEP_INTERVAL', 30.0)
        self.grace = datetime.timedelta(seconds=_seconds('JET_SQLA_SWEEP_GRACE', 60.0))
        self.stall = datetime.timedelta(seconds=_seconds('JET_SQLA_SWEEP_STALL', 300.0))
        # PERF: finding stalled jobs reads every queued chunk's row: once per stall period, not per sweep.
        self._next_stall_check = time.monotonic() + self.stall.total_seconds()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                log.exception('the sweep for unpublished background jobs failed; it runs again in %gs', self.interval)

    def sweep(self) -> int:
        """Publish every unpublished job past its grace period; returns how many."""
        found = self.jobs.store.unpublished(self.grace)
        for job_id in found:
            count = self.jobs.publish_chunks(job_id)
            self.jobs.store.mark_published(job_id)
            log.warning('job %s was recorded but never published; the sweep published its %d chunks', job_id, count)
        self.republish_stalled()
        return len(found)

    def republish_stalled(self) -> int:
        """Publish again the queued chunks of jobs that stopped making progress; returns how many jobs."""
        now = time.monotonic()
        if now < self._next_stall_check:
            return 0
        self._next_stall_check = now + self.stall.total_seconds()
        stalled = self.jobs.store.stalled(self.stall)
        if not stalled:
            return 0
        waiting = self.jobs.waiting_messages()
        if waiting:
            log.info('%d jobs made no progress for %gs, but %d messages wait in the queue; not republished',
                     len(stalled), self.stall.total_seconds(), waiting)
            return 0
        for job_id in stalled:
            count = self.jobs.publish_chunks(job_id)
            log.warning('job %s made no progress for %gs and its queue is empty: the broker may have lost its '
                        'messages; the sweep published its %d queued chunks again', job_id,
                        self.stall.total_seconds(), count)
        return len(stalled)
