"""Baseline: a bare Falcon 4 WSGI app doing the least the messages protocol needs.

It parses the JSON body, checks ``Authorization: Bearer <key>`` with
``hmac.compare_digest`` and writes precomputed bytes. Serve it with
``python -m gunicorn bench.bare_app:app`` (key from $BENCH_TOKEN, default BENCH_TOKEN).
"""
from __future__ import annotations

import hmac
import json
import os
from typing import Dict

import falcon

from bench.payloads import (
    ACTIONS, BENCH_TOKEN, EXECUTE_ACTION, EXECUTE_RESULT, GET_ACTION_LIST, MESSAGES_PATH, dumps,
)

RESPONSES: Dict[str, bytes] = {
    GET_ACTION_LIST: dumps(ACTIONS),
    EXECUTE_ACTION: dumps(EXECUTE_RESULT),
}
_UNAUTHORIZED = dumps({"error": "unauthorized"})
_BAD_REQUEST = dumps({"error": "body must be a JSON object with a string 'name'"})


class MessagesResource:
    """``POST /api/messages/``: auth, parse, answer with precomputed bytes."""

    def __init__(self, token: str) -> None:
        self._expected = ("Bearer " + token).encode()

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        auth = (req.auth or "").encode()
        if not hmac.compare_digest(auth, self._expected):
            resp.status = falcon.HTTP_401
            resp.data = _UNAUTHORIZED
            return
        try:
            message = json.loads(req.bounded_stream.read())
            name = message["name"]
        except (ValueError, TypeError, KeyError):
            name = None
        body = RESPONSES.get(name) if isinstance(name, str) else None
        if body is None:
            resp.status = falcon.HTTP_400
            resp.data = _BAD_REQUEST
            return
        resp.data = body


def create_app(token: str = BENCH_TOKEN) -> falcon.App:
    """The baseline WSGI app, accepting ``Bearer <token>``."""
    app = falcon.App()
    app.req_options.strip_url_path_trailing_slash = True
    app.add_route(MESSAGES_PATH.rstrip("/"), MessagesResource(token))
    return app


app = create_app(os.environ.get("BENCH_TOKEN", BENCH_TOKEN))
