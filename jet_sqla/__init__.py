"""jet_sqla: a Jet Admin messages backend for SQLAlchemy models.

Point a :class:`Bridge` at your models, declare actions as plain typed
functions, and serve ``bridge.wsgi_app()`` with gunicorn.
"""

from __future__ import annotations

from .bridge import Bridge
from .declaration import ActionContext
from .errors import ActionError
from .fields import Field
from .options import Option
from .params import Param

__all__ = [
    # The entry point
    'Bridge',
    # Declaring actions
    'ActionContext',
    'ActionError',
    'Field',
    'Option',
    'Param',
]

__version__ = '0.1.0'
