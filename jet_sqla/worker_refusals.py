"""The JSON refusals of :class:`~jet_sqla.workers.BufferingWorker`: answers no thread ever sees.

A request refused on the worker's event loop (431, 408), or by gunicorn's own
parser (400, 414…), is answered with an error in Jet's dialect, or as problem
details when its ``Accept`` header asks for them, instead of gunicorn's HTML page.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from . import problems
from .errors import JetError

__all__ = ['HINTS', 'Capture', 'accept_of', 'client_ip', 'json_response']

#: What to do about a refusal, said beside its reason: the client never reached the app to be told.
HINTS = {
    414: 'the request line is too long; send the params in the JSON body',
    431: 'a request header is too long; send a shorter one',
}


class Capture:
    """Stands for the client socket while gunicorn writes its HTML error page, so it can be rewritten."""

    def __init__(self) -> None:
        self.data = b''

    def gettimeout(self) -> float:
        return 0.0

    def sendall(self, data: bytes) -> None:
        self.data += data

    def parsed(self) -> tuple[int | None, str, str]:
        head, _, page = self.data.partition(b'\r\n\r\n')
        found = re.match(rb'HTTP/1\.1 (\d{3}) ([^\r\n]*)', head)
        if found is None:
            return None, '', ''
        body = page.decode('latin-1')
        message = re.search(r'</h1>\s*(.*?)\s*</body>', body, re.DOTALL)
        return int(found.group(1)), found.group(2).decode('latin-1'), html.unescape(message.group(1)) if message else ''


def client_ip(client: Any) -> str:
    return str(client[0]) if isinstance(client, tuple) and client else str(client)


class _Refusal(JetError):
    """A request refused before the app saw it, rendered like any error of the app."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = problems.code_for_status(status)


_ACCEPT = re.compile(rb'^accept[ \t]*:[ \t]*([^\r\n]*)', re.IGNORECASE | re.MULTILINE)


def accept_of(head: bytes | bytearray) -> str | None:
    found = _ACCEPT.search(head)
    return found.group(1).decode('latin-1') if found else None


def json_response(status: int, reason: str, message: str, accept: str | None = None) -> bytes:
    """The whole HTTP response for a refusal: in Jet's dialect, or as problem details if asked."""
    detail = '; '.join(part for part in (message or reason, HINTS.get(status)) if part)
    content_type, body = problems.render(_Refusal(status, detail), problem=problems.wants_problem(accept))
    payload = json.dumps(body).encode()
    head = (f'HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: {content_type}\r\n'
            f'Content-Length: {len(payload)}\r\n\r\n')
    return head.encode('latin-1') + payload
