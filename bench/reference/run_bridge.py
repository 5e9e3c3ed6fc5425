"""Launch jet-bridge 1.12.13 with the benchmark's message handlers (runs in its Python 3.9 venv).

All settings come from environment variables (see bench/reference.py: reference_env).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from bench.payloads import ACTIONS, EXECUTE_RESULT  # noqa: E402

# Importing jet_bridge.__main__ installs the configuration and parses settings from env.
from jet_bridge.__main__ import main  # noqa: E402
from jet_bridge_base.messages import EXECUTE_ACTION, GET_ACTION_LIST, add_handler  # noqa: E402


def get_action_list(name, params):
    """The 20-action list (the bridge serializes it on every request)."""
    return ACTIONS


def execute_action(name, params):
    """A trivial action."""
    return dict(EXECUTE_RESULT)


add_handler(GET_ACTION_LIST, get_action_list)
add_handler(EXECUTE_ACTION, execute_action)

if __name__ == "__main__":
    main()
