"""``GET /v1/events``: Server-Sent Events. ``id:`` is the event id, ``event:`` its type, ``data:`` the flash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...filters import FilterError
from ...hub import Hub
from ...problems import Problem
from ...readers import QueueReader
from ...security.policy import Security
from ...security.readers import COOKIE, ReaderTokenError, bearer
from ...wire import sse_opening
from ..resume import read_subscription

# Any site may embed the ticker: the stream is public, and a page on another origin reads it only with CORS.
HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
    "X-Content-Type-Options": "nosniff",
    "Access-Control-Allow-Origin": "*",
}


async def _frames(hub: Hub, sub: QueueReader, heartbeat: float, expires: float | None) -> AsyncIterator[bytes]:
    expiry = None
    if expires is not None:  # the reader's token expires: its stream ends
        expiry = asyncio.get_running_loop().call_later(max(0.0, expires - time.time()), sub.close, "expired")
    try:
        # A comment first, so that proxies and clients see the stream open at once.
        yield sse_opening()
        while True:
            try:
                batch = await asyncio.wait_for(sub.next_batch(), heartbeat)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if batch is None:
                return
            yield b"".join(frames.sse for frames in batch)
    finally:
        if expiry is not None:
            expiry.cancel()
        hub.detach(sub)


async def events(request: Request) -> Response:
    hub: Hub = request.app.state.hub
    try:
        flt, last = read_subscription(request.query_params, request.headers.get("last-event-id"))
    except FilterError as exc:
        raise Problem(400, exc.message, errors=[{"field": exc.field, "message": exc.message}]) from None
    security: Security = request.app.state.security
    try:
        grant = security.readers.verify(bearer(request.headers.get("authorization")) or request.cookies.get(COOKIE))
    except ReaderTokenError as exc:
        raise Problem(401, str(exc), errors=[{"field": "Authorization", "message": str(exc)}]) from None
    sub = QueueReader(security.readers.apply(flt, grant), hub.max_queue)
    await hub.attach(sub, last)
    heartbeat = request.app.state.settings.heartbeat_seconds
    body = _frames(hub, sub, heartbeat, grant.expires)
    return StreamingResponse(body, media_type="text/event-stream", headers=HEADERS)
