"""``GET /v1/stream`` over ASGI: WebSocket. Each event is one JSON text message; readers may send ``subscribe``.

``ticker hub``/``run`` serve this path with the native protocol (``native/websocket.py``) instead; this endpoint
serves it under any other ASGI server, and behaves the same way: a refused opening is answered with the same
problem document (400 bad filter, 401 bad reader token, 403 foreign Origin) through the WebSocket Denial Response
extension, and close codes and reasons (with their ``retry=`` hints) come from the one table,
``transports/close.py``. Two things are up to the server: a server without the extension can only refuse with a
bare 403 (a close before accept, 1008), and on shutdown the server itself closes with 1012, without a hint.
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
from ...problems import problem_response
from ...readers import QueueReader
from ...security.policy import Security
from ...security.readers import SUBPROTOCOL, ReaderTokenError, bearer, from_subprotocols
from ..close import Close, closing
from ..resume import read_subscription

logger = logging.getLogger("ticker.ws")


async def _receive(websocket: WebSocket, hub: Hub, sub: QueueReader) -> None:
    """Apply in-band ``subscribe`` messages; close the subscriber when the reader leaves or misbehaves."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            try:
                text = message.get("text")
                if text is None:
                    raise FilterError("type", "send subscribe messages as text")
                data = orjson.loads(text)
                if not isinstance(data, dict) or data.get("type") != "subscribe":
                    raise FilterError("type", "only {'type': 'subscribe', ...} messages are accepted")
                hub.refilter(sub, Filter.parse(data).keeping_access(sub.filter))
            except (orjson.JSONDecodeError, FilterError) as exc:
                sub.close(f"bad message: {exc}")
                return
    except (WebSocketDisconnect, RuntimeError):
        pass
    sub.close("gone")


async def _refuse(websocket: WebSocket, status: int, detail: str, errors: list[dict[str, str]] | None = None) -> None:
    """Answer the opening request with a problem document, as the native path does, if the server lets the app
    answer it (the WebSocket Denial Response extension); otherwise close before accepting (the server's 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(problem_response(status, detail, errors=errors))
    else:
        await websocket.close(code=Close.POLICY_VIOLATION, reason=detail[:120])


async def stream(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    try:
        flt, last = read_subscription(websocket.query_params)
    except FilterError as exc:
        await _refuse(websocket, 400, exc.message, [{"field": exc.field, "message": exc.message}])
        return
    security: Security = websocket.app.state.security
    headers = websocket.headers
    if not security.origins.allows(headers.get("origin"), headers.get("host")):
        await _refuse(websocket, 403, "This Origin may not open the stream.")
        return
    offered = [p.strip() for value in headers.getlist("sec-websocket-protocol") for p in value.split(",")]
    try:
        grant = security.readers.verify(bearer(headers.get("authorization")) or from_subprotocols(offered))
    except ReaderTokenError as exc:
        await _refuse(websocket, 401, str(exc))
        return
    flt = security.readers.apply(flt, grant)
    sub = QueueReader(flt, hub.max_queue)
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
    try:
        await hub.attach(sub, last)
    except BrokerUnavailable:
        # As on the native path: the stream opens, and closes at once with 1011 and a hint (retry shortly).
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(*closing("history"))
        return
    await websocket.accept(subprotocol=subprotocol)
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
