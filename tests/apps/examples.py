"""The shipped examples, imported as a user's server would import them."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ..conftest import TOKEN


def import_flask_library() -> ModuleType:
    """``jet_sqla.examples.flask_library.app``, whose bridge is built at import from ``JET_SQLA_TOKEN``.

    The variable is set for the import only, and not left behind.
    """
    saved = os.environ.get('JET_SQLA_TOKEN')
    os.environ['JET_SQLA_TOKEN'] = TOKEN
    try:
        return importlib.import_module('jet_sqla.examples.flask_library.app')
    finally:
        if saved is None:
            del os.environ['JET_SQLA_TOKEN']
        else:
            os.environ['JET_SQLA_TOKEN'] = saved
