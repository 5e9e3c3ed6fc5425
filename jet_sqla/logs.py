"""Structured log lines: one line per record, as ``key=value`` pairs or as JSON.

jet_sqla's modules log with ``extra=`` fields (``action``, ``outcome``,
``duration_ms``…); these formatters put them on the same line as the
message, so that a log shipper can index them. ``jet-sqla serve`` installs
them for its own records and gunicorn's alike; an application that serves the
bridge some other way may use :func:`logging_config` with its own setup.
"""

from __future__ import annotations

import collections
import json
import logging
import logging.config
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ['FORMATS', 'JSONFormatter', 'KeyValueFormatter', 'LineHandler', 'configure', 'hide', 'logging_config']

#: The names :func:`configure` accepts.
FORMATS = ('kv', 'json')

REDACTED = '[redacted]'

# Everything a LogRecord carries by itself; any other attribute came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord('', 0, '', 0, '', None, None))) | {'message', 'asctime'}

_secrets: tuple[str, ...] = ()

# The fields every line starts with.
_LINE_KEYS = frozenset({'time', 'level', 'logger', 'pid', 'msg'})

# A kv value with one of these (or a character that is not printable) is written as a JSON string.
_NEEDS_QUOTES = re.compile(r'[ "=\\]')


def hide(secrets: Iterable[str]) -> None:
    """Replace these strings (the server's own tokens) wherever they would appear in a line.

    Nothing in jet_sqla logs a credential; this also covers a user's code that would.
    """
    global _secrets
    _secrets = tuple(sorted({secret for secret in secrets if len(secret) >= 4}, key=len, reverse=True))


def _extras(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """What ``extra=`` put on the record, in order. PERF: one comprehension; a line per action run is on the hot path."""
    return [(key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES and key[:1] != '_']


def _redacted(line: str) -> str:
    """The line with the server's own tokens replaced (see :func:`hide`)."""
    for secret in _secrets:
        line = line.replace(secret, REDACTED)
    return line


class _StructuredFormatter(logging.Formatter):
    """The fields every line carries, in a fixed order, then the record's extras."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields: dict[str, Any] = {
            'time': _utc_time(record.created),
            'level': record.levelname.lower(),
            'logger': record.name,
            'pid': record.process,
            'msg': record.getMessage(),
        }
        fields.update(_extras(record))
        if record.name == 'gunicorn.access' and isinstance(record.args, Mapping):
            fields.update(_access_fields(record.args))
        if record.exc_info:
            fields['exc'] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields['exc'] = record.exc_text
        if record.stack_info:
            fields['stack'] = self.formatStack(record.stack_info)
        return fields

    def format(self, record: logging.LogRecord) -> str:
        return _redacted(self.render(self.fields(record)))

    def render(self, fields: dict[str, Any]) -> str:
        raise NotImplementedError


_second_cache: tuple[int, str] = (-1, '')


def _utc_time(created: float) -> str:
    """``2026-01-02T03:04:05.678Z``. PERF: the part up to the second is formatted once per second."""
    global _second_cache
    second = int(created)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))
        _second_cache = (second, prefix)
    return f'{prefix}.{int((created - second) * 1000):03d}Z'


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of gunicorn's access record worth a key; never headers, which may carry credentials."""
    fields: dict[str, Any] = {
        'msg': 'request',
        'remote': atoms.get('h'),
        'method': atoms.get('m'),
        'path': atoms.get('U'),
        'status': _int_or_none(atoms.get('s')),
        'bytes': _int_or_none(atoms.get('B')),
    }
    microseconds = _int_or_none(atoms.get('D'))
    if microseconds is not None:
        fields['duration_ms'] = round(microseconds / 1000, 2)
    return fields


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class KeyValueFormatter(_StructuredFormatter):
    """``time=… level=info logger=jet_sqla.actions pid=12 msg="action ran" action=promote …``.

    A value with a space, a quote, an ``=`` or a newline is written as a JSON
    string, so that a record is always one line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._prefixes: dict[tuple[str, str, int | None, str], str] = {}

    def format(self, record: logging.LogRecord) -> str:
        # PERF: a line whose message has no arguments (every jet_sqla line) repeats its level, logger,
        # pid and message: those are written once per process, then only the time and the extras.
        message = record.msg
        if (record.args or record.exc_info or record.exc_text or record.stack_info or type(message) is not str
                or record.name == 'gunicorn.access'):
            return super().format(record)
        extras = _extras(record)
        if any(key in _LINE_KEYS for key, _ in extras):
            return super().format(record)  # an extra that replaces a fixed field: the general path
        key = (record.levelname, record.name, record.process, message)
        prefix = self._prefixes.get(key)
        if prefix is None:
            if len(self._prefixes) >= 1024:
                self._prefixes.clear()
            prefix = self._prefixes[key] = self.render({
                'level': record.levelname.lower(), 'logger': record.name, 'pid': record.process, 'msg': message})
        parts = [f'time={_utc_time(record.created)}', prefix]
        parts += [f'{key}={_kv_value(value)}' for key, value in extras]
        return _redacted(' '.join(parts))

    def render(self, fields: dict[str, Any]) -> str:
        return ' '.join([f'{key}={_kv_value(value)}' for key, value in fields.items()])


class JSONFormatter(_StructuredFormatter):
    """One JSON object per line."""

    def render(self, fields: dict[str, Any]) -> str:
        return json.dumps(fields, default=str, ensure_ascii=False, separators=(',', ':'))


def _kv_value(value: Any) -> str:
    kind = type(value)
    text: str
    if kind is str:  # PERF: the common case first, by exact type
        text = value
    elif value is None:
        return 'null'
    elif isinstance(value, bool):
        return 'true' if value else 'false'
    elif isinstance(value, (int, float)):
        return repr(value)
    else:
        text = str(value)
    # isprintable() is False for newlines, tabs and every other control character.
    if not text or not text.isprintable() or _NEEDS_QUOTES.search(text) is not None:
        return json.dumps(text, ensure_ascii=False)
    return text


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _only_scalars(record: logging.LogRecord) -> bool:
    """Whether the record's message is a string and its extras are values that cannot change."""
    if type(record.msg) is not str:
        return False
    return all(type(value) in _SCALARS for _, value in _extras(record))


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

        Again in a forked child, on its first record or flush: locks and threads do not cross a fork,
        and what the parent had queued is the parent's to write, not written twice.
        """
        self._pid = os.getpid()
        self._queue: collections.deque[bytes | logging.LogRecord] = collections.deque()
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
        if self._pid != os.getpid():
            self._reset()
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
        self._queue.append(entry)  # deque.append is atomic: no lock on the request path
        self._queued += 1  # approximate across threads; it only decides when to write early
        if urgent or self._queued >= self.max_queued:
            self.flush()
        elif self._writer is None:
            self._start_writer()

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
        if self._pid != os.getpid():
            self._reset()
        with self._write_lock:
            queue = self._queue
            # popleft() is atomic too: lines queued meanwhile wait for the next write.
            entries = [queue.popleft() for _ in range(len(queue))]
            self._queued = 0
            lines = []
            for entry in entries:
                if isinstance(entry, bytes):
                    lines.append(entry)
                    continue
                try:
                    lines.append(self._encode(entry))
                except Exception:  # noqa: BLE001 - as in emit(): reported, and the other lines still written
                    self.handleError(entry)
            self._write(b''.join(lines))

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


def logging_config(log_format: str = 'kv', level: str = 'INFO', access_log: bool = False,
                   batched: bool = True) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: every record, gunicorn's too, to stderr.

    Args:
        log_format: One of :data:`FORMATS`.
        level: The lowest level written.
        access_log: Also write gunicorn's line per request (at info, so only when
            ``level`` lets info through). Off by default: see README, "Access lines".
        batched: Write INFO lines in batches, at most 0.1 s late (:class:`LineHandler`);
            ``False`` writes each at once.

    Raises:
        ValueError: ``log_format`` is not one of :data:`FORMATS`.
    """
    if log_format not in FORMATS:
        raise ValueError(f'log format must be one of {", ".join(FORMATS)}, not {log_format!r}')
    formatter = KeyValueFormatter if log_format == 'kv' else JSONFormatter
    return {
        'version': 1,
        'disable_existing_loggers': False,
        'formatters': {'structured': {'()': f'{formatter.__module__}.{formatter.__qualname__}'}},
        'handlers': {
            'stderr': {'class': f'{LineHandler.__module__}.{LineHandler.__qualname__}', 'formatter': 'structured',
                       'stream': 'ext://sys.stderr', 'interval': LineHandler.interval if batched else 0},
        },
        'root': {'level': level.upper(), 'handlers': ['stderr']},
        'loggers': {
            # gunicorn's loggers hand their records to the root's handler, instead of printing their own format.
            'gunicorn.error': {'level': level.upper(), 'handlers': [], 'propagate': True},
            # PERF: off unless asked for; they cost more per request than all of jet_sqla's own work.
            'gunicorn.access': {'level': level.upper() if access_log else 'CRITICAL', 'handlers': [],
                                'propagate': True},
        },
    }


def configure(log_format: str = 'kv', level: str = 'INFO', access_log: bool = False,
              batched: bool = True) -> dict[str, Any]:
    """Install :func:`logging_config` in this process, and return it (gunicorn applies it again in each worker).

    The process's records then go only to jet_sqla's formatters, which never
    write the caller's file and line, the thread or the process name; records
    stop collecting them (the optimisation the logging HOWTO describes).
    """
    config = logging_config(log_format, level, access_log, batched)
    # PERF: a sys._getframe() walk and two lookups less for every record.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.config.dictConfig(config)
    return config
