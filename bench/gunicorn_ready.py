"""gunicorn config (``-c python:bench.gunicorn_ready``): each worker, once its app is
loaded, creates a file named after its pid in $BENCH_READY_DIR, so the starter can
wait for *all* workers (a request answered by the first worker proves nothing about
the others, and wrk's keep-alive connections would all stick to that first one).

With ``BENCH_GC_FREEZE=1`` each worker also calls ``gc.freeze()`` once its app is loaded."""
from __future__ import annotations

import gc
import os
from typing import Any


def post_worker_init(worker: Any) -> None:
    """gunicorn hook: mark this worker ready (and, with BENCH_GC_FREEZE=1, freeze its heap first)."""
    if os.environ.get("BENCH_GC_FREEZE") == "1":
        # The app's long-lived objects (SQLAlchemy, Falcon, the bridge) leave the collector's
        # generations, so the collections that request garbage triggers stop re-scanning them.
        gc.collect()
        gc.freeze()
    ready_dir = os.environ.get("BENCH_READY_DIR")
    if not ready_dir:
        return
    try:
        open(os.path.join(ready_dir, str(worker.pid)), "wb").close()
    except OSError:
        pass  # the starter stopped waiting (e.g. a worker restarted later): nothing to do
