"""The readers' transports: WebSocket (``/v1/stream``) and Server-Sent Events (``/v1/events``)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route, WebSocketRoute

from .asgi.sse import events
from .asgi.websocket import stream


def routes() -> list[BaseRoute]:
    return [WebSocketRoute("/v1/stream", stream), Route("/v1/events", events)]
