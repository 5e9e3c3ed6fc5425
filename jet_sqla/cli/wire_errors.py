"""gunicorn's own refusals, in JSON: what it answers before jet_sqla sees a request.

gunicorn refuses a request it cannot parse (a header over its size limit, a
request line too long, a malformed request) with an HTML page of its own,
written before any app runs. ``jet-sqla serve`` replaces that writer, in its
own processes only, with one that sends the same status as an error in Jet's
dialect, built as :class:`~jet_sqla.workers.BufferingWorker` builds its own
refusals: the client gets JSON, whatever it sent. The request was never parsed,
so its ``Accept`` header is unknown and the default dialect is the one spoken.
This matters for the other worker classes (``--worker-class gthread``, ``sync``);
the default worker refuses before gunicorn's writer is reached.
"""

from __future__ import annotations

import socket

from gunicorn import util as gunicorn_util

from ..worker_refusals import json_response

__all__ = ['install', 'write_json_error']


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, answering JSON instead of HTML (same status, same closing)."""
    message = '; '.join(part for part in (reason, str(mesg)[:200]) if part)
    gunicorn_util.write_nonblock(sock, json_response(status_int, reason, message))


def install() -> None:
    """Make this process's gunicorn workers refuse in JSON (inherited by the workers it forks)."""
    gunicorn_util.write_error = write_json_error
