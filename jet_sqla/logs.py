"""Structured log lines: one line per record, as ``key=value`` pairs or as JSON.

jet_sqla's modules log with ``extra=`` fields (``action``, ``outcome``,
``duration_ms``…); these formatters put them on the same line as the
message, so that a log shipper can index them. ``jet-sqla serve`` installs
them for its own records and gunicorn's alike; an application that serves the
bridge some other way may use :func:`logging_config` with its own setup.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.config
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ['FORMATS', 'JSONFormatter', 'KeyValueFormatter', 'configure', 'hide', 'logging_config']

#: The names :func:`configure` accepts.
FORMATS = ('kv', 'json')

REDACTED = '[redacted]'

# Everything a LogRecord carries by itself; any other attribute came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord('', 0, '', 0, '', None, None))) | {'message', 'asctime'}

_secrets: tuple[str, ...] = ()


def hide(secrets: Iterable[str]) -> None:
    """Replace these strings (the server's own tokens) wherever they would appear in a line.

    Nothing in jet_sqla logs a credential; this also covers a user's code that would.
    """
    global _secrets
    _secrets = tuple(sorted({secret for secret in secrets if len(secret) >= 4}, key=len, reverse=True))


class _StructuredFormatter(logging.Formatter):
    """The fields every line carries, in a fixed order, then the record's extras."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        timestamp = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        fields: dict[str, Any] = {
            'time': timestamp.isoformat(timespec='milliseconds').replace('+00:00', 'Z'),
            'level': record.levelname.lower(),
            'logger': record.name,
            'pid': record.process,
            'msg': record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith('_'):
                fields[key] = value
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
        line = self.render(self.fields(record))
        for secret in _secrets:
            line = line.replace(secret, REDACTED)
        return line

    def render(self, fields: dict[str, Any]) -> str:
        raise NotImplementedError


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

    def render(self, fields: dict[str, Any]) -> str:
        return ' '.join(f'{key}={_kv_value(value)}' for key, value in fields.items())


class JSONFormatter(_StructuredFormatter):
    """One JSON object per line."""

    def render(self, fields: dict[str, Any]) -> str:
        return json.dumps(fields, default=str, ensure_ascii=False, separators=(',', ':'))


def _kv_value(value: Any) -> str:
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value)
    text = value if isinstance(value, str) else str(value)
    if not text or any(character in text for character in ' "=\n\r\t\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


def logging_config(log_format: str = 'kv', level: str = 'INFO', access_log: bool = False) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: every record, gunicorn's too, to stderr.

    Args:
        log_format: One of :data:`FORMATS`.
        level: The lowest level written.
        access_log: Also write gunicorn's line per request (at info, so only when
            ``level`` lets info through). Off by default: see README, "Access lines".

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
            'stderr': {'class': 'logging.StreamHandler', 'formatter': 'structured', 'stream': 'ext://sys.stderr'},
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


def configure(log_format: str = 'kv', level: str = 'INFO', access_log: bool = False) -> dict[str, Any]:
    """Install :func:`logging_config` in this process, and return it (gunicorn applies it again in each worker)."""
    config = logging_config(log_format, level, access_log)
    logging.config.dictConfig(config)
    return config
