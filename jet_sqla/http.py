"""The HTTP layer: Falcon resources, error mapping and body limits.

This is the only module that knows Falcon. It authenticates, reads the body,
hands the message to :class:`~jet_sqla.messages.Dispatcher`, and writes the
bytes it gets back. Every error, the framework's own included, leaves as JSON.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import MutableMapping
from typing import Any

import falcon
import sqlalchemy as sa

from . import encoding, problems
from .auth import Authenticator
from .errors import (
    DatabaseUnavailable,
    InternalError,
    InvalidParams,
    JetError,
    MessageError,
    OutcomeUnknown,
    ServerBusy,
    TooLarge,
)
from .line_handler import info_line
from .messages import Dispatcher

__all__ = ['HealthResource', 'JetHTTPError', 'MessagesResource', 'add_routes', 'create_app', 'to_http_error']

log = logging.getLogger(__name__)
#: Refused credentials: with access lines off (the default), the one record of someone trying tokens.
auth_log = logging.getLogger('jet_sqla.auth')

JSON = 'application/json'


class JetHTTPError(falcon.HTTPError):
    """A domain error raised through Falcon; any error serializer renders it in Jet's dialect.

    jet_sqla's own handlers never need it (they render the domain error
    directly, in the dialect the request asks for); it serves code that wants
    a ``falcon.HTTPError`` in hand.
    """

    def __init__(self, error: JetError) -> None:
        super().__init__(error.status, description=error.message, headers=_headers_for(error))
        self.error = error

    def to_dict(self, obj_type: type[MutableMapping[str, Any]] = dict) -> MutableMapping[str, Any]:
        body = obj_type()
        body.update(problems.jet_body(self.error))
        return body


def to_http_error(error: JetError) -> JetHTTPError:
    """The Falcon error for a domain error, with the headers its status calls for."""
    return JetHTTPError(error)


def _headers_for(error: JetError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if error.status == 401:
        headers['WWW-Authenticate'] = 'Bearer, Token, ProjectToken, JWT'
    if isinstance(error, (DatabaseUnavailable, ServerBusy)) and not isinstance(error, OutcomeUnknown):
        headers['Retry-After'] = '1'  # safe: nothing was written (nor run, when the server was busy)
    return headers


def _write_error(req: falcon.Request, resp: falcon.Response, error: JetError) -> None:
    """The one place an error response is written: in Jet's dialect, or as problem details if asked."""
    if error.status == 401:
        # Where from, not what was sent: the refusal's message may quote part of the header, a secret's perhaps.
        info_line(auth_log, 'authentication refused', {
            'remote': req.remote_addr, 'method': req.method, 'path': (req.root_path + req.path)[:200]})
    content_type, body = problems.render(error, problem=problems.wants_problem(req.get_header('Accept')))
    resp.status = error.status
    resp.data = encoding.dumps(body)
    resp.content_type = content_type
    resp.append_header('Vary', 'Accept')
    for name, value in _headers_for(error).items():
        resp.set_header(name, value)


def _handle_jet_error(req: falcon.Request, resp: falcon.Response, error: JetError, params: Any) -> None:
    # Written here rather than raised on, so that an app jet_sqla is mounted on renders it the same way.
    _write_error(req, resp, error)


def _handle_unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    if isinstance(error, falcon.HTTPError):
        raise error  # already a proper client-facing error
    log.error('unhandled error on %s %s', req.method, req.path, exc_info=error)
    _write_error(req, resp, InternalError('Internal error. The server log has the details.'))


class _FrameworkError(JetError):
    """An error Falcon raised itself (no route, wrong method, bad header), as a domain error to render."""

    def __init__(self, error: falcon.HTTPError, req: falcon.Request) -> None:
        phrase = problems.status_phrase(error.status_code)
        # The path the client asked for: under a Flask or Starlette mount, req.path lacks the prefix.
        message = f'{phrase}: {req.method} {(req.root_path + req.path)[:200]}'
        allowed = (error.headers or {}).get('Allow') if isinstance(error.headers, dict) else None
        if allowed:
            message += f'; this path answers {allowed}'
        super().__init__(error.description or message)
        self.status = error.status_code
        self.code = problems.code_for_status(error.status_code)


def _serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    # Always JSON, whatever else the client's Accept header asks for.
    domain = error.error if isinstance(error, JetHTTPError) else _FrameworkError(error, req)
    content_type, body = problems.render(domain, problem=problems.wants_problem(req.get_header('Accept')))
    resp.data = encoding.dumps(body)
    resp.content_type = content_type
    resp.append_header('Vary', 'Accept')


class MessagesResource:
    """``POST {prefix}/messages/``: the whole Jet protocol.

    Args:
        dispatcher: Answers messages.
        authenticator: Checks the Authorization header.
        max_body_size: Larger bodies get a 413 before they are read.
    """

    def __init__(self, dispatcher: Dispatcher, authenticator: Authenticator, max_body_size: int) -> None:
        self.dispatcher = dispatcher
        self.authenticator = authenticator
        self.max_body_size = max_body_size

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        # PERF: the WSGI variables themselves; get_header builds each name from the header's on every call.
        identity = self.authenticator.authenticate(req.env.get('HTTP_AUTHORIZATION'))
        key = req.env.get('HTTP_IDEMPOTENCY_KEY')
        if key is not None and not 0 < len(key) <= 255:
            # Refused on every message, as the OpenAPI document says, not only where a key is used.
            raise InvalidParams({'idempotency_key': 'expected a string of 1 to 255 characters'})
        message = self._read_message(req)
        resp.data = self.dispatcher.dispatch(
            message.get('name'),
            message.get('params'),
            identity,
            req,
            idempotency_key=key,
        )
        resp.content_type = JSON

    def _read_message(self, req: falcon.Request) -> dict[str, Any]:
        limit = self.max_body_size
        length = req.content_length  # PERF: a property that parses the header on each read
        if length is not None:
            if length > limit:
                raise TooLarge(f'The body is over the limit of {limit} bytes')
            # PERF: the input itself, never read past Content-Length (as WSGI asks); Falcon's
            # bounded_stream would wrap it and parse that header a second time.
            body = req.stream.read(length)
            if len(body) < length:
                # The client stopped mid-upload; even a body that parses is not the request it meant.
                raise MessageError(f'The body ended after {len(body)} of the {length} bytes '
                                   'its Content-Length announced', code='incomplete_body')
        else:
            # A chunked body, where the server marks its end; else Falcon's bounded stream, which reads nothing.
            stream = req.stream if req.env.get('wsgi.input_terminated') else req.bounded_stream
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise TooLarge(f'The body is over the limit of {limit} bytes')
        if not body.strip():
            raise MessageError('The body must be a JSON object: {"name": ..., "params": {...}}',
                               code='invalid_json')
        try:
            message = encoding.loads(body)
        except encoding.DecodeError as error:
            raise MessageError(f'The body is not valid JSON: {error}', code='invalid_json') from None
        if not isinstance(message, dict):
            raise MessageError('The body must be a JSON object: {"name": ..., "params": {...}}',
                               code='invalid_json')
        return message


class HealthResource:
    """``GET {prefix}/health``: 200 when the database answers, 503 when it does not. No auth."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text('SELECT 1'))
        except sa.exc.SQLAlchemyError as error:
            log.warning('health check: database unavailable (%s)', type(error).__name__)
            resp.status = falcon.HTTP_503
            resp.data = b'{"status":"unavailable","database":"unreachable"}'
        else:
            resp.data = b'{"status":"ok"}'
        resp.content_type = JSON

    def on_head(self, req: falcon.Request, resp: falcon.Response) -> None:
        """As GET, and Falcon leaves the body out: load balancers probe with HEAD."""
        self.on_get(req, resp)


class ReadOnlyFiles:
    """Static files that answer GET and HEAD only; any other method is a 405 JSON."""

    def __init__(self, files: falcon.routing.StaticRoute) -> None:
        self.files = files

    def __call__(self, req: falcon.Request, resp: falcon.Response, **kwargs: Any) -> None:
        if req.method not in ('GET', 'HEAD'):
            raise falcon.HTTPMethodNotAllowed(['GET', 'HEAD'])
        self.files(req, resp)


class RedirectResource:
    """Sends a GET elsewhere with a 301. No auth."""

    def __init__(self, location: str) -> None:
        self.location = location

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        raise falcon.HTTPMovedPermanently(self.location)


class StaticDocumentResource:
    """Serves fixed bytes, such as the OpenAPI document. No auth."""

    def __init__(self, body: bytes, content_type: str = JSON) -> None:
        self.body = body
        self.content_type = content_type

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = self.body
        resp.content_type = self.content_type


def add_routes(
    app: falcon.App[Any, Any],
    *,
    dispatcher: Dispatcher,
    authenticator: Authenticator,
    engine: sa.Engine,
    prefix: str = '/api',
    max_body_size: int = 1024 * 1024,
    console: bool = False,
    openapi: bytes | None = None,
) -> None:
    """Add jet_sqla's routes, and the handler that turns domain errors into JSON, to ``app``."""
    prefix = '/' + prefix.strip('/') if prefix.strip('/') else ''
    messages = MessagesResource(dispatcher, authenticator, max_body_size)
    # Both spellings, so that the path works whatever the app's trailing-slash option.
    app.add_route(f'{prefix}/messages/', messages)
    app.add_route(f'{prefix}/messages', messages)
    app.add_route(f'{prefix}/health', HealthResource(engine))
    if openapi is not None:
        app.add_route(f'{prefix}/openapi.json', StaticDocumentResource(openapi))
    if console:
        directory = importlib.resources.files('jet_sqla') / 'console'
        app.add_sink(ReadOnlyFiles(falcon.routing.StaticRoute(f'{prefix}/console', str(directory),
                                                              fallback_filename='index.html')),
                     f'{prefix}/console/')
        # Served without its slash, the page would resolve its relative links one level too high.
        # (An app that strips trailing slashes cannot tell the two apart, so it must not redirect.)
        if not app.req_options.strip_url_path_trailing_slash:
            app.add_route(f'{prefix}/console', RedirectResource('console/'))
    app.add_error_handler(JetError, _handle_jet_error)


def create_app(
    cors_origins: str | list[str] | None = '*', **routes: Any
) -> falcon.App[falcon.Request, falcon.Response]:
    """A Falcon app that serves jet_sqla's routes and answers every error in JSON.

    Args:
        cors_origins: Origins allowed to call from a browser (Jet Admin runs in
            one); ``'*'`` is safe because credentials travel in a header, not a cookie.
        **routes: Passed to :func:`add_routes`.
    """
    app = falcon.App(middleware=[falcon.CORSMiddleware(allow_origins=cors_origins)] if cors_origins else [])
    app.add_error_handler(Exception, _handle_unexpected)
    app.set_error_serializer(_serialize_error)
    add_routes(app, **routes)
    return app
