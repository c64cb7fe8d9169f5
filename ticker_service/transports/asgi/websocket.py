"""``GET /v1/stream`` over ASGI: WebSocket. Each event is one JSON text message; readers may send ``subscribe``.

``ticker hub``/``run`` serve this path with the native protocol (``native/websocket.py``) instead; this endpoint
serves it under any other ASGI server. Close codes and reasons come from the one table, ``transports/close.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...errors import BrokerUnavailable
from ...filters import Filter, FilterError
from ...hub import Hub
from ...readers import QueueReader
from ...security.policy import Security
from ...security.readers import ReaderTokenError, bearer, from_subprotocols
from ..close import Close, closing
from ..resume import read_subscription

logger = logging.getLogger("ticker.ws")


async def _receive(websocket: WebSocket, hub: Hub, sub: QueueReader) -> None:
    """Apply in-band ``subscribe`` messages; close the subscriber when the reader leaves or misbehaves."""
    try:
        while True:
            message = await websocket.receive_text()
            try:
                data = orjson.loads(message)
                if not isinstance(data, dict) or data.get("type") != "subscribe":
                    raise FilterError("type", "only {'type': 'subscribe', ...} messages are accepted")
                hub.refilter(sub, Filter.parse(data).keeping_access(sub.filter))
            except (orjson.JSONDecodeError, FilterError) as exc:
                sub.close(f"bad message: {exc}"[:120])
                return
    except (WebSocketDisconnect, RuntimeError, KeyError):
        sub.close("gone")


async def stream(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    try:
        flt, last = read_subscription(websocket.query_params)
    except FilterError as exc:
        await websocket.close(code=Close.POLICY_VIOLATION, reason=exc.message[:120])
        return
    security: Security = websocket.app.state.security
    headers = websocket.headers
    if not security.origins.allows(headers.get("origin"), headers.get("host")):
        await websocket.close(code=Close.POLICY_VIOLATION, reason="origin not allowed")  # before accept: an HTTP 403
        return
    offered = [p for value in headers.getlist("sec-websocket-protocol") for p in value.split(",")]
    try:
        grant = security.readers.verify(bearer(headers.get("authorization")) or from_subprotocols(offered))
    except ReaderTokenError:
        await websocket.close(code=Close.POLICY_VIOLATION, reason="reader token refused")  # before accept: an HTTP 403
        return
    flt = security.readers.apply(flt, grant)
    sub = QueueReader(flt, hub.max_queue)
    try:
        await hub.attach(sub, last)
    except BrokerUnavailable:
        await websocket.close(*closing("history"))
        return
    await websocket.accept(subprotocol="ticker" if "ticker" in [p.strip() for p in offered] else None)
    receiver = asyncio.create_task(_receive(websocket, hub, sub))
    expiry = None
    if grant.expires is not None:
        expiry = asyncio.get_running_loop().call_later(max(0.0, grant.expires - time.time()), sub.close, "expired")
    try:
        while True:
            batch = await sub.next_batch()
            if batch is None:
                break
            for frames in batch:
                await websocket.send_text(frames.ws_text.decode())
        if sub.close_reason != "gone":  # gone: the reader left, there is no one to tell
            await websocket.close(*closing(sub.close_reason))
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        if expiry is not None:
            expiry.cancel()
        receiver.cancel()
        hub.detach(sub)
