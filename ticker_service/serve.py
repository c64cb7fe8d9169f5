"""The one seam to uvicorn: its options, and the front protocol that hands readers to the native transports.

``uvicorn ticker_service.app:create_app --factory`` also works, but serves readers through the portable ASGI
endpoints (``transports/asgi/``) only; :func:`serve` is what ``ticker run`` and ``ticker hub`` use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from .push.settings import PushSettings
from .settings import Settings

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("ticker.serve")

SPARE_FILES = 64  # beyond one per reader: Redis, the listening socket, logs, the scripts served


def raise_open_files_limit(max_connections: int) -> int:
    """Raise this process's open-files limit to its hard limit, and warn when that is below what
    ``max_connections`` needs; the limit now in force is returned.

    Every reader is a socket. A container's soft limit is often 1024 (Docker 25 and later, systemd's default) while
    its hard limit is far higher: left alone, a hub would refuse readers past ~1,000 with nothing in its logs but
    failed accepts. Forked hub processes (``--workers``) inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY:
        return soft
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a hard limit above the kernel's fs.nr_open
            pass
    needed = max_connections + SPARE_FILES
    if soft < needed:
        logger.warning(
            "open-files limit %d is below the %d that TICKER_MAX_CONNECTIONS=%d needs: this process will refuse "
            "readers past about %d. Raise it (docker run --ulimit nofile=%d, compose `ulimits: nofile:`, "
            "systemd LimitNOFILE=) or lower TICKER_MAX_CONNECTIONS.",
            soft,
            needed,
            max_connections,
            max(soft - SPARE_FILES, 0),
            needed,
        )
    return soft


LISTEN_BACKLOG = 65_535
TICK_SECONDS = 1.0  # uvicorn's main loop: the Date header is refreshed once a second either way


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

    raise_open_files_limit(settings.max_connections)

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
        # After a restart every reader connects again at once; connections the accept queue cannot hold are
        # dropped and retried by the client's kernel 1, 3, 7 s later. uvicorn asks for 2,048; the kernel caps
        # this at net.core.somaxconn (4,096 on current Linux).
        "backlog": LISTEN_BACKLOG,
    }
    if processes > 1:
        # Each process builds its own app from the same environment: its own hub and Redis subscription.
        uvicorn.run("ticker_service.app:create_app", factory=True, workers=processes, **options)
    else:
        server = quiet_server(uvicorn.Config(create_app(settings, push=push, background=background), **options))
        server.run()


def quiet_server(config: uvicorn.Config) -> uvicorn.Server:
    """uvicorn's server, its main loop waking once a second instead of ten times.

    That loop only refreshes the Date header (once a second in uvicorn too) and checks whether to exit; its 10 Hz
    wake-ups were two thirds of an idle hub's CPU (1.6 of 2.4 ms/s). An exit signal wakes it at once, so a
    SIGTERM is acted on as soon as before."""
    import uvicorn

    def resolve(tick: asyncio.Future[None]) -> None:
        if not tick.done():
            tick.set_result(None)

    class QuietServer(uvicorn.Server):
        tick: asyncio.Future[None] | None = None

        async def main_loop(self) -> None:
            loop = asyncio.get_running_loop()
            while not await self.on_tick(0):  # counter 0: the Date header on every tick
                self.tick = loop.create_future()
                timer = loop.call_later(TICK_SECONDS, resolve, self.tick)
                try:
                    await self.tick
                finally:
                    timer.cancel()

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            if self.tick is not None:
                self.tick.get_loop().call_soon_threadsafe(resolve, self.tick)

    return QuietServer(config)
