"""Per HTTP request: an id, one log line, and the editor API's latency and outcome metrics.

A plain ASGI middleware (no response buffering, so the ASGI SSE endpoint still streams). The id is the caller's
``X-Request-ID`` when it is a short token, else a new one; it goes back in the response and into every log line
written while the request is handled. Query strings are not logged.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import metrics
from .logs import request_id

logger = logging.getLogger("ticker.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
INGEST_METHODS = frozenset({"POST", "PATCH", "DELETE"})
_QUIET_PATHS = ("/healthz", "/readyz", "/metrics")  # logged at DEBUG
_counted: dict[tuple[str, int], tuple[Any, Any]] = {}  # (method, status) -> the two labelled metrics


def _ingest_metrics(method: str, status: int) -> tuple[Any, Any]:
    """The latency histogram and the request counter for ``method`` and ``status``, labelled once, not per request."""
    found = _counted.get((method, status))
    if found is None:
        found = _counted[method, status] = (
            metrics.INGEST_SECONDS.labels(method),
            metrics.INGEST_REQUESTS.labels(method, str(status)),
        )
    return found


class RequestObserver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        rid = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        token = request_id.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            method, path = scope["method"], scope["path"]
            if method in INGEST_METHODS and path.startswith("/v1/flashes"):
                latency, requests = _ingest_metrics(method, status)
                latency.observe(seconds)
                requests.inc()
            level = logging.INFO if path not in _QUIET_PATHS else logging.DEBUG
            if logger.isEnabledFor(level):
                logger.log(
                    level,
                    "request",
                    extra={"method": method, "path": path[:200], "status": status, "ms": round(seconds * 1000, 2)},
                )
            request_id.reset(token)
