"""Shared benchmark payloads: the 20-action list, the request bodies, the shared secret.

Standard library only and Python 3.9 compatible: the reference launcher imports it
inside jet-bridge's Python 3.9 virtualenv.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

BENCH_TOKEN = "bench-bearer-key-0123456789abcdef"
"""Shared secret sent as ``Authorization: Bearer <BENCH_TOKEN>``."""

MESSAGES_PATH = "/api/messages/"
GET_ACTION_LIST = "get_action_list"
EXECUTE_ACTION = "execute_action"
MESSAGE_NAMES = (GET_ACTION_LIST, EXECUTE_ACTION)

ACTION_COUNT = 20
_MODELS = ("users", "orders", "accounts", "invoices")


def _action(index: int) -> Dict[str, Any]:
    """One action description; the shape varies with ``index`` like a real action list."""
    action: Dict[str, Any] = {"name": "action_{:02d}".format(index)}
    if index % 5 == 4:
        action["common_action"] = {}
    else:
        action["model_action"] = {
            "model": _MODELS[index % len(_MODELS)],
            "for_instance": index % 2 == 0,
            "bulk": index % 2 == 0 and index % 3 == 0,
        }
    # The exact shape jet_sqla sends for a declared param, so that the bare
    # endpoint, the reference and jet_sqla all write the same bytes.
    action["params"] = [
        {"name": "note", "field": "TextField", "required": False, "params": {}},
        {"name": "amount", "field": "DecimalField", "required": True, "params": {}},
        {
            "name": "account",
            "field": "ForeignKey",
            "required": True,
            "params": {"related_model": {"model": "accounts"}},
        },
    ][: index % 4]
    return action


def make_actions(count: int = ACTION_COUNT) -> List[Dict[str, Any]]:
    """The benchmark's action list (``count`` actions)."""
    return [_action(i) for i in range(count)]


ACTIONS = make_actions()
EXECUTE_RESULT: Dict[str, Any] = {"result": True}


def dumps(value: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(value, separators=(",", ":")).encode()


TRIVIAL_ACTION = "action_04"
"""A common action with no form: the trivial ``execute_action`` of the benchmarks."""

REQUEST_PARAMS: Dict[str, Dict[str, Any]] = {
    GET_ACTION_LIST: {},
    EXECUTE_ACTION: {"name": TRIVIAL_ACTION, "params": {}},
}


def request_body(message: str) -> bytes:
    """JSON body of the benchmark request for ``message``."""
    return dumps({"name": message, "params": REQUEST_PARAMS[message]})


def request_headers(token: str = BENCH_TOKEN) -> Dict[str, str]:
    """Headers of every benchmark request (the reference parses JSON only with this Content-Type)."""
    return {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
