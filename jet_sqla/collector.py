"""Pausing Python's cyclic garbage collector while a large run builds and drops its ORM instances.

A run over many records builds several container objects per row, all held by
the session until the run ends: the collector walks them again and again and
frees none of them. :func:`paused_gc` pauses it for such a run, process-wide,
for at most :data:`MAX_PAUSE_SECONDS`; see its docstring for why that is safe
and what it costs other threads.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ['GC_PAUSE_MIN_IDS', 'MAX_PAUSE_SECONDS', 'paused_gc']

#: Runs and loads of at least this many ids run with the cyclic collector paused.
GC_PAUSE_MIN_IDS = 1_000
#: The longest the collector stays paused, whatever holds the pause: past it a watchdog
#: resumes collection, and a long action goes on as it would have without the pause.
MAX_PAUSE_SECONDS = 2.0

_pause_lock = threading.Lock()
_pauses = 0
_resume = False
#: When the current pause began (time.monotonic()), or None when there is none or the watchdog ended it.
_paused_since: float | None = None
_watchdog: threading.Thread | None = None


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block, and resume it after, even on error.

    Why: building N ORM instances allocates several container objects per row,
    and every 700 net allocations start a collection; the older generations are
    collected again and again over the ever larger set of live instances. At
    10,000 to 100,000 rows that was about 40 % of the load's wall time (7 full
    collections for 100,000 rows), and none of it frees anything: every new
    object is referenced from the session's identity map until the run ends.
    Held until the run's session has closed, the pause also spares the one
    collection that would otherwise walk all of them once it ends: by then
    reference counting has freed them (0.3 ms of a 4.5 ms run of 1,000 ids).

    Why it is safe: only the *cyclic* collector pauses; reference counting
    still frees everything that is not in a cycle, in this thread and all
    others. The pause is undone in ``finally``, and lasts at most
    :data:`MAX_PAUSE_SECONDS`: a watchdog thread resumes collection past that
    (an action that waits on something, or works for long, then runs with the
    collector as it would without the pause). Nested and concurrent pauses are
    counted: the collector comes back when the last one ends, and only if it
    was enabled when the first one began (an application that turned it off
    itself keeps it off).

    What it costs other threads: the collector is process-wide, so while a
    pause lasts, cycles that other threads drop are not collected; they are
    collected by the first collection after it (the allocation counters keep
    running, so that comes soon). Their memory can grow by the cyclic garbage
    they make in those two seconds at most; nothing else changes for them.
    """
    global _pauses, _resume, _paused_since
    with _pause_lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            if _resume:
                gc.disable()
                _paused_since = time.monotonic()
                _start_watchdog()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses = max(0, _pauses - 1)  # at 0 already in a child forked during the pause
            if _pauses == 0:
                _paused_since = None
                if _resume:
                    gc.enable()


def _start_watchdog() -> None:
    """Start the watchdog, once per process (it does not survive a fork). Called under the lock."""
    global _watchdog
    if _watchdog is None or not _watchdog.is_alive():
        _watchdog = threading.Thread(target=_watch, name='jet_sqla gc watchdog', daemon=True)
        _watchdog.start()


def _watch() -> None:
    global _paused_since
    while True:
        time.sleep(MAX_PAUSE_SECONDS / 4)
        with _pause_lock:
            if _paused_since is not None and time.monotonic() - _paused_since > MAX_PAUSE_SECONDS:
                # The pauses still open end as usual; gc.enable() is then a no-op.
                _paused_since = None
                gc.enable()


def _after_fork_in_child() -> None:
    # Only the forking thread crosses a fork: the lock may have been held by another, and the pauses
    # of the others would never end here. The child starts with none, and the collector as it was.
    global _pause_lock, _watchdog, _pauses, _paused_since
    _pause_lock = threading.Lock()
    _watchdog = None
    if _pauses and _resume:
        gc.enable()
    _pauses = 0
    _paused_since = None


if hasattr(os, 'register_at_fork'):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
