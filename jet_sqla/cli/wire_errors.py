"""gunicorn's own refusals, in JSON: what it answers before jet_sqla sees a request.

gunicorn refuses a request it cannot parse (a header over its size limit, a
request line too long, a malformed request) with an HTML page of its own,
written before any app runs. ``jet-sqla serve`` replaces that writer, in its
own processes only, with one that sends the same status as an error in Jet's
dialect (``detail``, ``error``, ``error_code``): the client gets JSON, whatever
it sent. The request was never parsed, so its ``Accept`` header is unknown and
the default dialect is the one spoken.
"""

from __future__ import annotations

import json
import socket

from gunicorn import util as gunicorn_util

from ..problems import code_for_status

__all__ = ['install', 'write_json_error']

#: What to do about each refusal, beside gunicorn's own reason.
_HINTS = {
    414: 'the request line is too long; send the params in the JSON body',
    431: 'a request header is too long (gunicorn takes up to 8190 bytes by default); send a shorter one',
}


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's ``util.write_error``, answering JSON instead of HTML (same status, same closing)."""
    detail = '; '.join(part for part in (reason, _HINTS.get(status_int), str(mesg)[:200]) if part)
    body = json.dumps({'detail': detail, 'error': detail, 'error_code': code_for_status(status_int)}).encode()
    head = (f'HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n'
            f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n')
    gunicorn_util.write_nonblock(sock, head.encode('latin-1') + body)


def install() -> None:
    """Make this process's gunicorn workers refuse in JSON (inherited by the workers it forks)."""
    gunicorn_util.write_error = write_json_error
