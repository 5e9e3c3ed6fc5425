"""Writing log lines off the request's path: :class:`LineHandler`.

A handler for processes that serve requests on threads: lines at INFO are
queued without a lock and written in batches by one writer thread; warnings and
errors at once. :mod:`jet_sqla.logs` installs it with its formatters.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ['LineHandler', 'extras', 'info_line']

# Everything a LogRecord carries by itself; any other attribute came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord('', 0, '', 0, '', None, None))) | {'message', 'asctime'}


def extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """What ``extra=`` put on the record, in order. PERF: one comprehension; a line per action run is on the hot path."""
    return [(key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES and key[:1] != '_']


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _all_scalars(values: Iterable[Any]) -> bool:
    """Whether every value is one that cannot change. PERF: the check runs in C, over the types."""
    return _SCALARS.issuperset(map(type, values))


def _only_scalars(record: logging.LogRecord) -> bool:
    """Whether the record's message is a string and its extras are values that cannot change."""
    if type(record.msg) is not str:
        return False
    return _all_scalars(value for _, value in extras(record))


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes whole lines in batches: at most ``interval`` seconds late, warnings and errors at once.

    PERF: a write system call per record is what a log line costs in a
    threaded server, far more than formatting it. The call gives up the GIL,
    one of the other request threads takes it, and getting it back is a futex
    wait and two context switches; ``StreamHandler``'s lock, held across the
    write, adds its own hand-overs. Under ``jet-sqla serve``'s 8 threads the
    "action ran" line cost 60-70 µs of CPU per trivial ``execute_action``
    (11 µs in one thread); see BENCHMARKS.md. Here a record at INFO or below is
    queued without a lock and written with the others by one ``os.write()``
    from a writer thread, every ``interval`` seconds. A record whose message
    has arguments or is not a string, whose extras are not plain scalars, or
    that carries a traceback or a stack, is formatted at once, in the caller's
    thread, so that it says what was true then; the others (every jet_sqla
    line) are formatted by the writer.
    A WARNING or above is written at once, after everything queued before it,
    so lines keep their order. At exit (``logging.shutdown``) and on
    ``flush()`` the queue is written out.

    What it costs: a process killed with SIGKILL loses the INFO lines of its
    last ``interval`` (0.1 s by default). A forked child drops the lines its
    parent had queued (the parent writes them). ``interval=0`` writes every
    line at once (still one ``write()`` each, without a lock): for processes
    that others fork and end without Python's exit handlers, as Celery's pool
    does with its child processes.

    A stream without a file descriptor (a test's capture, a ``StringIO``) is
    written at once, as ``StreamHandler`` does.
    """

    #: Seconds an INFO line may wait for the writer thread.
    interval = 0.1
    #: Records queued before they are written without waiting for the thread.
    max_queued = 2000

    def __init__(self, stream: Any = None, interval: float | None = None) -> None:
        super().__init__(stream)
        if interval is not None:
            self.interval = interval
        self._fd = self._descriptor(self.stream)
        self._reset()

    def _reset(self) -> None:
        """The state of this process.

        Again in a forked child, as it starts (:func:`_after_fork_in_child`): locks and threads do
        not cross a fork, and what the parent had queued is the parent's to write, not written twice.
        """
        _live_handlers.add(self)
        self._queue: collections.deque[Any] = collections.deque()  # records, bytes, and lines as parts
        self._queued = 0
        # Re-entrant: formatting a queued record may itself log a warning, which writes at once.
        self._write_lock = threading.RLock()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None

    def setStream(self, stream: Any) -> Any:
        self.flush()
        old = super().setStream(stream)
        self._fd = self._descriptor(self.stream)
        return old

    @staticmethod
    def _descriptor(stream: Any) -> int | None:
        try:
            descriptor = stream.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        # Whatever the stream had buffered goes first, so that lines stay in order.
        stream.flush()
        return descriptor if isinstance(descriptor, int) else None

    def handle(self, record: logging.LogRecord) -> bool:
        if self._fd is None:
            return super().handle(record)
        result = self.filter(record)  # no lock: emit takes its own only to write
        if result:
            # Python 3.12's filters may return the record to write instead.
            self.emit(result if isinstance(result, logging.LogRecord) else record)
        return bool(result)

    def emit(self, record: logging.LogRecord) -> None:
        if self._fd is None:
            super().emit(record)
            return
        # After close() (a late record at exit) there is no writer thread left: written at once too.
        urgent = record.levelno >= logging.WARNING or not self.interval or self._stop.is_set()
        if urgent or record.args or record.exc_info or record.stack_info or not _only_scalars(record):
            # Formatted now: its arguments, its message object, its extras or its traceback may change.
            try:
                entry: bytes | logging.LogRecord = self._encode(record)
            except RecursionError:
                raise
            except Exception:  # noqa: BLE001 - logging's contract: a record that cannot be written is reported
                self.handleError(record)
                return
        else:
            # PERF: a record of a plain message and scalar extras (jet_sqla's own lines) is formatted by
            # the writer thread, in a batch, off the request's path.
            entry = record
        self._enqueue(entry, urgent)

    def _enqueue(self, entry: bytes | logging.LogRecord, urgent: bool = False) -> None:
        self._queue.append(entry)  # deque.append is atomic: no lock on the request path
        self._queued_one(urgent)

    def _enqueue_line(self, parts: tuple[Any, ...]) -> None:
        """Queue an :func:`info_line`'s line as its parts: ``_LINE``, then a ``_Line``'s fields in their order.

        PERF: one item each, so that no object outlives the call: a queued line
        waits up to an interval, and an object that lives that long (a NamedTuple
        per line) is what made the cyclic collector run, and its older
        generations grow, under ``jet-sqla serve``. The parts are strings,
        numbers and a dict of them, none of which the collector tracks.
        """
        self._queue.extend(parts)  # one C call: as atomic as append, and the tuple of parts dies here
        self._queued_one(False)

    def _queued_one(self, urgent: bool) -> None:
        self._queued += 1  # approximate across threads; it only decides when to write early
        if urgent or self._queued >= self.max_queued:
            self.flush()
        elif self._writer is None:
            self._start_writer()

    def _accepts_deferred(self) -> bool:
        """Whether a line may be queued before its record exists (see :func:`info_line`)."""
        if self._fd is None or not self.interval or self.filters or self.level > logging.INFO:
            return False
        return not self._stop.is_set()

    def _encode(self, record: logging.LogRecord) -> bytes:
        return (self.format(record) + self.terminator).encode('utf-8', 'backslashreplace')

    def _start_writer(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                return
            self._writer = threading.Thread(target=self._write_every_interval, name='jet_sqla log writer',
                                            daemon=True)
            self._writer.start()

    def _write_every_interval(self) -> None:
        stop = self._stop
        while not stop.wait(self.interval):
            if self._queue:
                self.flush()

    def flush(self) -> None:
        """Write every line queued so far, in one system call where the kernel takes it whole."""
        if self._fd is None:
            super().flush()
            return
        with self._write_lock:
            queue = self._queue
            # popleft() is atomic too: lines queued meanwhile wait for the next write. A line's parts
            # arrive in one extend(), so the length taken here never splits them. PERF: drained in one C loop.
            items = list(itertools.starmap(queue.popleft, itertools.repeat((), len(queue))))
            self._queued = 0
            self._write(b''.join(self._encoded(items)))

    def _encoded(self, items: list[Any]) -> list[bytes]:
        """The lines of a drained queue, in order: an entry that cannot be formatted is reported and left out."""
        lines = []
        process = os.getpid() if logging.logProcesses else None  # as each record would have it
        format_deferred = getattr(self.formatter, 'format_deferred', None)
        terminator = self.terminator
        position, end = 0, len(items)
        while position < end:
            entry = items[position]
            position += 1
            if type(entry) is bytes:
                lines.append(entry)
                continue
            line: list[Any] = []
            if entry is _LINE:  # PERF: formatted from its parts in place; a _Line only when a record is needed
                line = items[position:position + _LINE_PARTS]
                position += _LINE_PARTS
            try:
                if entry is _LINE:
                    text = (format_deferred(line[0], line[3] / 1e9, line[1], line[2], process)
                            if format_deferred is not None else None)
                    if text is not None:
                        lines.append((text + terminator).encode('utf-8', 'backslashreplace'))
                        continue
                    entry = _Line._make(line).record()
                lines.append(self._encode(entry))
            except Exception:  # noqa: BLE001 - as in emit(): reported, and the other lines still written
                # The record, made here only when format_deferred failed before the line's record was.
                self.handleError(_Line._make(line).record() if entry is _LINE else entry)
        return lines

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = None
        while view:
            try:
                view = view[os.write(self._fd, view):]  # type: ignore[arg-type]  # a short write goes on
            except BlockingIOError:
                # A non-blocking stream that is full: wait for its reader, a second at most.
                deadline = deadline if deadline is not None else time.monotonic() + 1
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
            except OSError:
                return  # the stream is gone (a closed pipe): there is nowhere left to say so

    def close(self) -> None:
        self._stop.set()
        self.flush()
        super().close()


#: Every LineHandler of the process, to be reset in a forked child.
_live_handlers: weakref.WeakSet[LineHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # PERF: once, at the fork, rather than a getpid() system call on every record and flush.
    for handler in list(_live_handlers):
        handler._reset()


if hasattr(os, 'register_at_fork'):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Line(NamedTuple):
    """A line of :func:`info_line`, queued before its record exists: what the record will be made of.

    Queued as its parts (:meth:`LineHandler._enqueue_line`); the writer formats it from them, and makes the
    ``_Line`` again only when a record is needed (:meth:`LineHandler._encoded`).
    """

    logger: str
    msg: str
    fields: dict[str, Any]
    created_ns: int
    thread: int | None
    thread_name: str | None
    pathname: str | None
    lineno: int | None
    func: str | None

    def record(self) -> logging.LogRecord:
        """The record ``Logger.info(msg, extra=fields)`` would have made, then and in that thread."""
        if self.pathname is None or self.lineno is None or self.func is None:
            pathname, lineno, func = '(unknown file)', 0, '(unknown function)'
        else:
            pathname, lineno, func = self.pathname, self.lineno, self.func
        record = logging.LogRecord(self.logger, logging.INFO, pathname, lineno, self.msg, None, None, func)
        created = self.created_ns / 1e9
        record.created = created
        record.msecs = float(self.created_ns // 1_000_000 % 1000)
        record.relativeCreated = (created - getattr(logging, '_startTime', created)) * 1000
        record.thread, record.threadName = self.thread, self.thread_name
        record.__dict__.update(self.fields)
        return record


def info_line(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> None:
    """``logger.info(msg, extra=fields)``, for a plain message and scalar fields: jet_sqla's own lines.

    PERF: where the only destination of the record is a :class:`LineHandler`
    (``jet-sqla serve``), the caller queues the message, its fields, the time
    and its thread, and the writer thread formats it, in a batch: straight from
    those fields with jet_sqla's formatters (``format_deferred``), else from the
    record it makes then. A ``LogRecord`` made on the request's path cost 13 µs of a
    request's CPU under ``jet-sqla serve`` (5 µs in a loop that keeps it in the
    CPU's caches); see BENCHMARKS.md. The record is the one ``Logger.info`` would
    have made: same time, thread and caller. Anywhere else, a filter, another
    handler (a test's log capture, an application's own), a custom record
    factory, this is ``logger.info`` itself.

    ``fields`` is kept as it is, not copied: the caller hands over a dict it does not change afterwards.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _sole_line_handler(logger)
    if (handler is None or logging.getLogRecordFactory() is not logging.LogRecord
            or not _RECORD_ATTRIBUTES.isdisjoint(fields)
            or not _all_scalars(fields.values())):
        logger.info(msg, extra=fields, stacklevel=2)
        return
    pathname = lineno = func = None
    if logging._srcfile is not None:  # records carry the caller's file and line
        code = (frame := sys._getframe(1)).f_code
        pathname, lineno, func = code.co_filename, frame.f_lineno, code.co_name
    thread = threading.get_ident() if logging.logThreads else None
    thread_name = threading.current_thread().name if logging.logThreads else None
    handler._enqueue_line((_LINE, logger.name, msg, fields, time.time_ns(), thread, thread_name, pathname, lineno, func))


#: Marks the parts of an :func:`info_line`'s line in a LineHandler's queue: the fields of a ``_Line`` follow it.
_LINE = object()
_LINE_PARTS = len(_Line._fields)


def _sole_line_handler(logger: logging.Logger) -> LineHandler | None:
    """The one handler a record of ``logger`` reaches, when that is a :class:`LineHandler` that takes deferred lines."""
    found: LineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not LineHandler:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found if found is not None and found._accepts_deferred() else None
