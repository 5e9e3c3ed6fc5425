"""ASGI apps that ``jet-sqla serve`` must refuse, pointing to uvicorn."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

starlette_app = Starlette()


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app with no framework at all."""
