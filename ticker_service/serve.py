"""The one seam to uvicorn: its options, and the front protocol that hands readers to the native transports.

``uvicorn ticker_service.app:create_app --factory`` also works, but serves readers through the portable ASGI
endpoints (``transports/asgi/``) only; :func:`serve` is what ``ticker run`` and ``ticker hub`` use.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from .push.settings import PushSettings
from .settings import Settings


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    push: PushSettings | None = None,
    background: Callable[[], Awaitable[Any]] | None = None,
    processes: int = 1,
) -> None:
    """Serve with uvicorn and the native reader protocols; ``processes`` > 1 forks hubs sharing the socket.
    ``background`` runs beside the app for its lifetime (one process only)."""
    import uvicorn

    from .ops import logs, multiproc

    # The app learns where it listens (the canary reads back through it); forked processes read the environment.
    settings = settings.model_copy(update={"host": host, "port": port})
    if processes > 1:
        os.environ.update(TICKER_HOST=host, TICKER_PORT=str(port))
        # Each hub process keeps its metrics in files there and /metrics sums them; the files of an earlier run go.
        multiproc.prepare(port)
    from .app import create_app
    from .transports.native.front import FrontProtocol

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "http": FrontProtocol,
        "ws": "websockets-sansio",  # for WebSocket paths other than /v1/stream
        "ws_max_size": settings.ws_max_message_bytes,
        "ws_per_message_deflate": False,
        "log_level": settings.log_level,
        "log_config": logs.uvicorn_config(settings.log_level),
        "access_log": False,  # the request middleware logs each request once, as JSON, without its query string
        "timeout_graceful_shutdown": settings.shutdown_seconds,
        "timeout_keep_alive": settings.idle_timeout_seconds,
    }
    if processes > 1:
        # Each process builds its own app from the same environment: its own hub and Redis subscription.
        uvicorn.run("ticker_service.app:create_app", factory=True, workers=processes, **options)
    else:
        uvicorn.Server(uvicorn.Config(create_app(settings, push=push, background=background), **options)).run()
