"""The Starlette application: ingest API, reader transports, health and the browser pages, around one broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from . import transports
from .api import admin, audit, desk, devices, flashes, health, openapi, pages, reader_session, receipts
from .backends import create_backends
from .broker import Broker
from .errors import BrokerUnavailable
from .hub import Hub
from .ops import collector
from .ops.canary import Canary
from .ops.observe import RequestObserver
from .ops.reach import Reach
from .ops.trim import Trimmer
from .problems import Problem, handle_http_exception, handle_problem, handle_unavailable
from .push.settings import PushSettings
from .security.policy import Security, middleware
from .settings import STATIC, Settings
from .transports.native import NativeState

logger = logging.getLogger("ticker.app")


def create_app(
    settings: Settings | None = None,
    *,
    broker: Broker | None = None,
    push: PushSettings | None = None,
    background: Callable[[], Awaitable[Any]] | None = None,
) -> Starlette:
    """The whole service for ``settings``. ``background`` runs as a task for the app's lifetime: the composition
    root (``ticker run`` with ``REDIS_URL``) passes the arq worker, which this package does not import."""
    settings = settings or Settings()
    push = push or PushSettings()  # read once: the device API and an in-process worker share it
    backends = create_backends(settings, broker)  # Redis or memory: decided here, once
    broker = backends.broker
    hub = Hub(
        broker,
        max_queue=settings.queue_max_messages,
        replay_limit=settings.replay_max_events,
        write_buffer_limit=settings.write_buffer_limit_bytes,
        coalesce=settings.fanout_coalesce_seconds,
        slice_seconds=settings.fanout_slice_seconds,
    )
    broker.subscribe(hub.dispatch)
    broker.on_history_lost(hub.forget)
    trimmer = Trimmer(settings.malloc_trim_seconds)
    security = Security.from_settings(settings)
    reach = Reach.for_redis(backends.redis)  # time to screen: receipts' sketches (ops/reach.py)
    canary = Canary(settings, broker, security.readers, backends.redis) if settings.canary_seconds else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await broker.start()
        await hub.prime()
        hub.start_heartbeat(settings.heartbeat_seconds)
        trimmer.start()
        reporting = admin.start_reporting(hub, backends.redis)
        background_task = asyncio.ensure_future(background()) if background is not None else None
        side_tasks = [asyncio.ensure_future(reach.run())]
        if canary is not None:
            side_tasks.append(asyncio.ensure_future(canary.run()))
        collector.settle()
        try:
            # The state reaches uvicorn's protocols too: the native WebSocket/SSE protocols find the hub there.
            yield NativeState.from_settings(hub, security, settings).lifespan_state()
        finally:
            # Stop the readers' streams first so that open connections end, then the broker.
            hub.stop_heartbeat()
            trimmer.stop()
            if reporting is not None:
                reporting.cancel()
            hub.close_all("shutdown")
            for task in side_tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await reach.flush()  # this hub's last second of receipts
            if background_task is not None:
                background_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await background_task
            await broker.close()

    app = Starlette(
        routes=[
            *flashes.routes(),  # first: each request is matched route by route, and ingest is the hot path
            *pages.routes(),
            *health.routes(),
            *receipts.routes(),
            *desk.routes(),
            *devices.routes(push),
            *audit.routes(),
            *reader_session.routes(),
            *openapi.routes(),
            *transports.routes(),
            *admin.routes(),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ],
        exception_handlers={
            Problem: handle_problem,
            BrokerUnavailable: handle_unavailable,
            HTTPException: handle_http_exception,
        },
        lifespan=lifespan,
        middleware=[Middleware(RequestObserver), *middleware(settings)],
    )
    app.state.settings = settings
    app.state.security = security
    app.state.backends = backends
    app.state.broker = broker
    app.state.hub = hub
    app.state.tokens = backends.tokens
    app.state.audit = backends.audit
    app.state.rate_limiter = backends.rate_limiter
    app.state.reach = reach
    app.state.publish_times = receipts.PublishTimes()
    return app
