"""Operations endpoints: ``/metrics`` (Prometheus), ``GET /v1/admin/stats`` (admin scope) and the ``/admin`` page.

``/metrics`` carries no secrets but tells who reads what: expose it to the scraper only (``deploy/nginx.conf``
does not pass it through).
"""

from __future__ import annotations

import asyncio
import contextlib

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..hub import Hub
from ..keys import ARQ_QUEUE
from ..ops import metrics, reports
from ..settings import STATIC
from .editors import authenticate
from .http import json_response

ADMIN_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


async def metrics_endpoint(request: Request) -> Response:
    redis = request.app.state.backends.redis
    if redis is not None:
        with contextlib.suppress(Exception):
            metrics.QUEUE_DEPTH.set(await asyncio.wait_for(redis.zcard(ARQ_QUEUE), 1.0))
    body, content_type = metrics.exposition()
    return Response(body, headers={"Cache-Control": "no-store", "Content-Type": content_type})


async def admin_stats(request: Request) -> Response:
    await authenticate(request, "admin")
    state = request.app.state
    return json_response(await reports.stats(state.hub, state.backends.redis, state.reach))


async def admin_page(request: Request) -> Response:
    return FileResponse(str(STATIC / "admin.html"), headers=ADMIN_PAGE_HEADERS)


def routes() -> list[Route]:
    return [
        Route("/metrics", metrics_endpoint),
        Route("/admin", admin_page),
        Route("/v1/admin/stats", admin_stats),
    ]


def start_reporting(hub: Hub, redis: Redis | None) -> asyncio.Task[None] | None:
    """In Redis mode, this hub process reports on itself for the operations page until the task is cancelled."""
    if redis is None:
        return None
    return asyncio.get_running_loop().create_task(
        reports.report_forever(redis, "hub", lambda: reports.hub_report(hub)), name="ticker-ops-report"
    )
