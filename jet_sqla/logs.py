"""Structured log lines: one line per record, as ``key=value`` pairs or as JSON.

jet_sqla's modules log with ``extra=`` fields (``action``, ``outcome``,
``duration_ms``…); these formatters put them on the same line as the
message, so that a log shipper can index them. ``jet-sqla serve`` installs
them for its own records and gunicorn's alike; an application that serves the
bridge some other way may use :func:`logging_config` with its own setup.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .line_handler import LineHandler
from .line_handler import extras as _extras

__all__ = ['FORMATS', 'JSONFormatter', 'KeyValueFormatter', 'LineHandler', 'configure', 'hide', 'logging_config']

#: The names :func:`configure` accepts.
FORMATS = ('kv', 'json')

REDACTED = '[redacted]'

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


def _redacted(line: str) -> str:
    """The line with the server's own tokens replaced (see :func:`hide`)."""
    for secret in _secrets:
        line = line.replace(secret, REDACTED)
    return line


class _StructuredFormatter(logging.Formatter):
    """The fields every line carries, in a fixed order, then the record's extras."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = _fixed_fields(record.created, record.levelname, record.name, record.process, record.getMessage())
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

    def format_deferred(self, name: str, created: float, msg: str, extras: dict[str, Any],
                        process: int | None) -> str | None:
        """The line :meth:`format` writes for ``Logger.info(msg, extra=extras)`` on ``name`` at ``created``.

        ``process`` is what the record's ``process`` would be (``os.getpid()``, or ``None`` when
        ``logging.logProcesses`` is off); the writer reads it once per batch.

        PERF: the writer thread of a :class:`LineHandler` formats :func:`~jet_sqla.line_handler.info_line`'s
        lines without making a ``LogRecord`` first: 8.0 to 4.8 µs per line in a loop (BENCHMARKS.md).
        ``None`` when only a record will do: a subclass that formats records its own way, or an extra
        that replaces one of the fixed fields.
        """
        if not self._writes_deferred(extras):
            return None
        fields = _fixed_fields(created, logging.getLevelName(logging.INFO), name, process, msg)
        fields.update(extras)
        return _redacted(self.render(fields))

    def _writes_deferred(self, extras: Iterable[str]) -> bool:
        """Whether :meth:`format_deferred` writes the line :meth:`format` would, for extras with these names."""
        return self._formats_records_plainly() and not any(key in _LINE_KEYS or key[:1] == '_' for key in extras)

    def _formats_records_plainly(self) -> bool:
        """Whether this class formats a record as jet_sqla's formatters do, not in a way of its own."""
        return type(self).format in _RECORD_FREE and type(self).fields is _StructuredFormatter.fields


def _fixed_fields(created: float, levelname: str, name: str, process: int | None, msg: str) -> dict[str, Any]:
    """The fields every line starts with, in their order (:data:`_LINE_KEYS`)."""
    return {'time': _utc_time(created), 'level': levelname.lower(), 'logger': name, 'pid': process, 'msg': msg}


_second_cache: tuple[int, str] = (-1, '')


def _utc_time(created: float) -> str:
    """``2026-01-02T03:04:05.678Z``. PERF: the part up to the second is formatted once per second."""
    global _second_cache
    second = int(created)
    cached_second, prefix = _second_cache
    if second != cached_second:
        prefix = time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))
        _second_cache = (second, prefix)
    return prefix + _MILLISECONDS[int((created - second) * 1000)]


#: ``.000Z`` to ``.999Z``: PERF: a lookup, where formatting the number cost a third of a line's time.
_MILLISECONDS = tuple(f'.{ms:03d}Z' for ms in range(1000))


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
        self._templates: dict[tuple[str, str, int | None, str, tuple[str, ...]], str] = {}
        self._record_free = self._formats_records_plainly()  # a property of the class: asked once

    def format(self, record: logging.LogRecord) -> str:
        # PERF: a line whose message has no arguments (every jet_sqla line) differs from the last line of its
        # logger, message and extra names only in its time and values: it is one %-substitution into a template.
        message = record.msg
        if (record.args or record.exc_info or record.exc_text or record.stack_info or type(message) is not str
                or record.name == 'gunicorn.access'):
            return super().format(record)
        extras = _extras(record)
        names = tuple([key for key, _ in extras])
        if not _LINE_KEYS.isdisjoint(names):
            return super().format(record)  # an extra that replaces a fixed field: the general path
        template = self._template(record.levelname, record.name, record.process, message, names)
        return _redacted(template % (_utc_time(record.created), *[_kv_value(value) for _, value in extras]))

    def format_deferred(self, name: str, created: float, msg: str, extras: dict[str, Any],
                        process: int | None) -> str | None:
        # PERF: the same template as format() (BENCHMARKS.md, fifth round); the names are checked once per template.
        if not self._record_free:
            return None
        levelname = logging.getLevelName(logging.INFO)
        names = tuple(extras)
        template = self._templates.get((levelname, name, process, msg, names))
        if template is None:
            if not self._writes_deferred(names):
                return None
            template = self._template(levelname, name, process, msg, names)
        return _redacted(template % (_utc_time(created), *map(_kv_value, extras.values())))

    def _template(self, levelname: str, name: str, process: int | None, msg: str, names: tuple[str, ...]) -> str:
        """The line with ``%s`` for the time and each extra's value, and every other ``%`` doubled; made once.

        Never for a name in :data:`_LINE_KEYS` or one that starts with ``_``: both callers leave those to the
        general path first.
        """
        key = (levelname, name, process, msg, names)
        template = self._templates.get(key)
        if template is None:
            prefix = self.render({'level': levelname.lower(), 'logger': name, 'pid': process, 'msg': msg})
            template = 'time=%s ' + prefix.replace('%', '%%') + ''.join(
                f' {field.replace("%", "%%")}=%s' for field in names)
            if len(self._templates) >= 1024:
                self._templates.clear()
            self._templates[key] = template
        return template

    def render(self, fields: dict[str, Any]) -> str:
        return ' '.join([f'{key}={_kv_value(value)}' for key, value in fields.items()])


class JSONFormatter(_StructuredFormatter):
    """One JSON object per line."""

    def render(self, fields: dict[str, Any]) -> str:
        return json.dumps(fields, default=str, ensure_ascii=False, separators=(',', ':'))


#: The ``format`` methods that :meth:`_StructuredFormatter.format_deferred` writes the same line as.
_RECORD_FREE = (KeyValueFormatter.format, _StructuredFormatter.format)


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
            'stderr': {'class': f'{__name__}.LineHandler',  # re-exported here: the documented path
                       'formatter': 'structured', 'stream': 'ext://sys.stderr', 'interval': LineHandler.interval if batched else 0},
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
