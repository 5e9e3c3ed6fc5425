"""A gunicorn worker that gives a thread to a request only once the whole request has arrived.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its
first byte arrives, and the thread then reads the headers, and the body, from
a blocking socket with no deadline. A client that sends half a request line
and stops holds that thread forever: as many such sockets as there are threads
stop the server (slowloris).

:class:`BufferingWorker` reads every request on the worker's event loop
instead, with non-blocking sockets, as nginx, Hypercorn and Uvicorn do. Only a
request whose headers and body have fully arrived is handed to the thread pool,
already buffered; until then a connection costs a few kilobytes, not a thread.
Deadlines close what does not arrive in time:

- the headers must be complete within :attr:`BufferingWorker.header_timeout`
  (10 s by default; ``JET_SQLA_HEADER_TIMEOUT``);
- the body must keep coming: it has :attr:`BufferingWorker.body_timeout`
  (10 s; ``JET_SQLA_BODY_TIMEOUT``) plus one second per
  :attr:`BufferingWorker.body_min_rate` bytes received (500, as Apache's
  ``mod_reqtimeout``), so a stall or a trickle is closed;
- memory is bounded: headers over :attr:`BufferingWorker.max_header_bytes` get
  a 431, a body is buffered up to :attr:`BufferingWorker.max_buffered_body`
  and within a per-worker budget; a larger one goes to a thread with the body
  deadline on every read;
- when the worker is full, the oldest connection that has not finished its
  headers is closed to make room for a new one.

gunicorn's own error pages (400 for a malformed request line, 431, 414…) are
answered in JSON by this worker, in the same dialect as the app's errors
(:mod:`jet_sqla.worker_refusals`).

Use it with plain gunicorn too: ``gunicorn --worker-class jet_sqla.workers.BufferingWorker``.
TLS and HTTP/2 connections are passed to gthread's own handling unchanged.
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from .worker_refusals import Capture, accept_of, client_ip, json_response

try:
    from gunicorn.http2 import negotiation as _negotiation
except ImportError:  # pragma: no cover - a gunicorn without HTTP/2
    _negotiation = None

__all__ = ['BufferingWorker']

_HEADER_END = re.compile(rb'\r?\n\r?\n')
_CHUNK_SIZE = re.compile(rb'([0-9A-Fa-f]+)[^\r\n]*\r\n')


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, '').strip()
    if not raw:
        return default
    value = float(raw)
    if not value > 0:
        raise ValueError(f'{name}={raw!r}: expected a positive number of seconds')
    return value


class _Arriving:
    """A request being read on the event loop: its bytes so far and its deadline."""

    __slots__ = (
        'body_needed',
        'body_start',
        'buffer',
        'chunk_offset',
        'conn',
        'deadline',
        'header_end',
        'registered',
        'reserved',
        'started',
    )

    def __init__(self, conn: Any, buffer: bytes, deadline: float) -> None:
        self.conn = conn
        self.buffer = bytearray(buffer)
        self.started = time.monotonic()
        self.deadline = deadline
        self.header_end = -1  # the offset after the blank line, once seen
        self.body_needed = 0  # bytes of a Content-Length body still to come
        self.body_start = 0.0
        self.chunk_offset = -1  # where the next chunk-size line starts, for a chunked body
        self.reserved = 0  # bytes of the worker's buffer budget this request holds
        self.registered = False  # whether the poller watches its socket


class BufferingWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with requests read on the event loop and handed to a thread only when complete.

    The settings are class attributes, read from the environment once per
    process; subclass to change them in code.
    """

    #: Seconds a connection has to send its request line and headers.
    header_timeout = _env_seconds('JET_SQLA_HEADER_TIMEOUT', 10.0)
    #: Seconds a body has, on top of one second per :attr:`body_min_rate` bytes received.
    body_timeout = _env_seconds('JET_SQLA_BODY_TIMEOUT', 10.0)
    #: Bytes per second a body must average past its first :attr:`body_timeout` seconds.
    body_min_rate = 500
    #: The largest request line plus headers, in bytes; larger gets a 431.
    max_header_bytes = 64 * 1024
    #: The largest body buffered before the request gets a thread (1 MiB, jet_sqla's default limit, and a margin).
    max_buffered_body = 1024 * 1024 + 64 * 1024
    #: The most body bytes one worker buffers at once, across its connections.
    buffer_budget = 64 * 1024 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arriving: dict[int, _Arriving] = {}  # by id(conn), in arrival order
        self._buffered = 0

    # -- the event loop side ------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            super().accept(listener)
        except OSError as error:
            if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                raise
            # Out of file descriptors: make room rather than crash the worker.
            self.log.warning('cannot accept a connection (%s); closing the oldest unfinished one', error.strerror)
            self._evict_oldest()

    def enqueue_req(self, conn: Any) -> None:
        """Read the request on the event loop; a thread gets it once it has arrived."""
        if self.cfg.is_ssl or getattr(conn, 'is_http2', False) or self._h2c_possible(conn):
            super().enqueue_req(conn)
            return
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b''
        arriving = _Arriving(conn, leftover, time.monotonic() + self.header_timeout)
        if self.nr_conns >= self.worker_connections:
            # Full: gthread would stop accepting. An unfinished request is the cheaper one to lose.
            self._evict_oldest()
        self._arriving[id(conn)] = arriving
        conn.sock.setblocking(False)
        # PERF: a kept-alive connection is here because it is readable, and a new one often has
        # its request waiting already: read at once, and skip the poller when it is all there.
        if self._advance(arriving) or self._receive(arriving):
            return
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, arriving))
        arriving.registered = True

    def _h2c_possible(self, conn: Any) -> bool:
        return _negotiation is not None and bool(_negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def _on_readable(self, arriving: _Arriving, _sock: Any) -> None:
        self._receive(arriving)

    def _receive(self, arriving: _Arriving) -> bool:
        """Read what has arrived; whether the request has left the loop."""
        try:
            data = arriving.conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._drop(arriving)
            return True
        if not data:
            if arriving.buffer:
                # The client stopped sending: what did arrive is answered as gthread would answer it
                # (a cut body is the app's 400, a cut request line gunicorn's), with no more to wait for.
                self._hand_over(arriving)
            else:
                self._drop(arriving)
            return True
        arriving.buffer += data
        return self._advance(arriving)

    def _advance(self, arriving: _Arriving) -> bool:
        """Whether ``arriving`` has left the loop: handed to a thread, answered or dropped."""
        buffer = arriving.buffer
        if arriving.header_end < 0:
            found = _HEADER_END.search(buffer)
            if found is None:
                if len(buffer) > self.max_header_bytes:
                    self._answer(arriving, 431, 'Request Header Fields Too Large',
                                 f'The request line and headers are over {self.max_header_bytes} bytes')
                    return True
                return False
            arriving.header_end = found.end()
            if arriving.header_end > self.max_header_bytes:
                self._answer(arriving, 431, 'Request Header Fields Too Large',
                             f'The request line and headers are over {self.max_header_bytes} bytes')
                return True
            if not self._frame_body(arriving):
                self._hand_over(arriving)
                return True
        if arriving.chunk_offset >= 0:
            done = self._chunks_done(arriving)
        else:
            done = len(buffer) - arriving.header_end >= arriving.body_needed
        if done or len(buffer) - arriving.header_end > self.max_buffered_body:
            self._hand_over(arriving)
            return True
        return False

    def _frame_body(self, arriving: _Arriving) -> bool:
        """Work out how much body to wait for; ``False`` to hand the request over at once.

        Anything unusual (no body, a malformed length, ``Expect``) goes to gunicorn's
        own parser straight away, which answers it as it always has.
        """
        head = bytes(arriving.buffer[: arriving.header_end]).lower()
        lines = head.split(b'\n')[1:]
        length: int | None = None
        chunked = False
        for line in lines:
            name, _, value = line.partition(b':')
            name = name.strip()
            if name == b'content-length':
                if length is not None or not value.strip().isdigit():
                    return False
                length = int(value.strip())
            elif name == b'transfer-encoding':
                chunked = b'chunked' in value
            elif name == b'expect':
                return False  # the client waits for "100 Continue", which gunicorn's parser sends
        arriving.body_start = time.monotonic()
        if chunked:
            if length is not None:
                return False
            arriving.chunk_offset = arriving.header_end
            reserve = self.max_buffered_body
        elif length:
            if length > self.max_buffered_body:
                # Too large to hold: the app sees the headers now (jet_sqla answers 413 without reading),
                # and a thread reads the body, under the body deadline on every read.
                return False
            arriving.body_needed = length
            reserve = length
        else:
            return False
        if self._buffered + reserve > self.buffer_budget:
            return False  # the budget is spent: this body is read by a thread, under the body deadline
        arriving.reserved = reserve
        self._buffered += reserve
        arriving.deadline = arriving.body_start + self.body_timeout
        return True

    def _chunks_done(self, arriving: _Arriving) -> bool:
        """Scan the chunked framing that has arrived; ``True`` once the last chunk and trailers are in."""
        buffer = arriving.buffer
        while True:
            offset = arriving.chunk_offset
            match = _CHUNK_SIZE.match(buffer, offset)
            if match is None:
                # A size line that never ends, or garbage: gunicorn's parser will say what is wrong.
                return len(buffer) - offset > 1024 or (len(buffer) > offset and not buffer[offset:offset + 1].isalnum())
            size = int(match.group(1), 16)
            if size == 0:
                return _HEADER_END.search(buffer, match.end() - 2) is not None
            end = match.end() + size + 2
            if len(buffer) < end:
                return False
            arriving.chunk_offset = end

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        expired = []
        for arriving in self._arriving.values():
            deadline = arriving.deadline
            if arriving.header_end >= 0:
                received = len(arriving.buffer) - arriving.header_end
                deadline += received / self.body_min_rate
            if now > deadline:
                expired.append(arriving)
        for arriving in expired:
            if arriving.buffer:
                what = 'headers' if arriving.header_end < 0 else 'body'
                self._answer(arriving, 408, 'Request Timeout', f'The request {what} did not arrive in time')
            else:
                self._drop(arriving)

    def _evict_oldest(self) -> None:
        for arriving in self._arriving.values():
            if arriving.header_end < 0:
                self._drop(arriving)
                return

    def _leave(self, arriving: _Arriving) -> None:
        self._arriving.pop(id(arriving.conn), None)
        self._buffered -= arriving.reserved
        arriving.reserved = 0
        if arriving.registered:
            arriving.registered = False
            try:
                self.poller.unregister(arriving.conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _drop(self, arriving: _Arriving) -> None:
        self._leave(arriving)
        self.nr_conns -= 1
        arriving.conn.close()

    def _answer(self, arriving: _Arriving, status: int, reason: str, message: str) -> None:
        """Answer in JSON from the loop and close: for requests no thread should ever see."""
        self._leave(arriving)
        self.log.warning('Invalid request from ip=%s: %s', client_ip(arriving.conn.client), message)
        head = arriving.buffer[: arriving.header_end] if arriving.header_end >= 0 else arriving.buffer
        try:
            arriving.conn.sock.send(json_response(status, reason, message, accept_of(head)))
        except OSError:
            pass
        self.nr_conns -= 1
        arriving.conn.close()

    def _hand_over(self, arriving: _Arriving) -> None:
        self._leave(arriving)
        conn = arriving.conn
        conn.jet_buffered = bytes(arriving.buffer)
        conn.data_ready = True  # gthread must not wait for data on its own: it has arrived
        super().enqueue_req(conn)

    # -- the thread side ----------------------------------------------------

    def handle(self, conn: Any) -> Any:
        buffered = getattr(conn, 'jet_buffered', None)
        if buffered is not None:
            conn.jet_buffered = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(buffered)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        # A body that did not fit the buffer is read here: each read and write waits at most this long.
        if not self.cfg.is_ssl:
            conn.sock.settimeout(self.body_timeout)
        return super().handle_request(req, conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's own answer to a bad request, in JSON instead of HTML."""
        capture = Capture()
        super().handle_error(req, capture, addr, exc)
        status, reason, message = capture.parsed()
        if status is None:
            return
        accept = next((value for name, value in getattr(req, 'headers', None) or () if name.upper() == 'ACCEPT'),
                       None)
        try:
            client.setblocking(False)
            client.send(json_response(status, reason, message, accept))
        except OSError:
            self.log.debug('Failed to send error message.')
