"""Background actions: jobs split into chunks, run by Celery workers or an embedded thread pool.

``@bridge.action(..., background=True, chunk_size=500)`` makes ``execute_action``
record a job and answer at once; ``get_job`` and ``cancel_job`` follow it.
Celery is imported only when a broker is configured.
"""

from __future__ import annotations

from .service import DEFAULT_QUEUE, Jobs
from .tables import chunk_table, job_table

__all__ = ['DEFAULT_QUEUE', 'Jobs', 'chunk_table', 'job_table']
