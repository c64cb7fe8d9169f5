"""``/v1/stream`` served natively in uvicorn: after the handshake the fan-out writes frames to the socket itself.

Going through ASGI costs a task per connection and, per message, a coroutine step, an ASGI message dict and a frame
serialisation. Here the hub writes the pre-built frame bytes (the same for every reader) with one
``transport.write``; the websockets sans-I/O protocol under uvicorn still parses what the reader sends (pings,
``subscribe`` messages, close) and answers pings. Any other WebSocket path goes to the ASGI app as usual.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from ..filters import Filter, FilterError
from ..hub import Hub, TransportReader
from ..problems import BrokerUnavailable
from .resume import read_subscription
from .websocket import CLOSE_SLOW

logger = logging.getLogger("ticker.ws")

CLOSE_CODES = {
    "slow": (CLOSE_SLOW, "reader too slow; resume with last_event_id"),
    "shutdown": (1012, "service restart; reconnect with last_event_id"),
    "history": (1011, "history unavailable, retry shortly"),
}


class ReaderWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with ``/v1/stream`` readers attached to the hub directly."""

    reader: TransportReader | None = None
    hub: Hub | None = None

    def handle_connect(self, event: Request) -> None:
        hub = self.app_state.get("ticker_hub")
        path, _, query = event.path.partition("?")
        if not isinstance(hub, Hub) or unquote(path) != "/v1/stream":
            super().handle_connect(event)
            return
        self.handshake_initiated = True
        try:
            flt, last = read_subscription(dict(parse_qsl(query, keep_blank_values=True)))
        except FilterError as exc:
            self._respond(self.conn.reject(400, exc.message + "\n"))
            return
        response = self.conn.accept(event)
        if response.status_code != 101:
            self._respond(response)
            return
        self.handshake_complete = True
        self.conn.send_response(response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.start_keepalive()
        self.hub = hub
        self.reader = TransportReader(flt, hub.write_buffer_limit, self.transport, websocket=True,
                                      closer=self._close_reader)
        if last is None:
            hub.add(self.reader)
        else:
            task = self.loop.create_task(self._attach(hub, self.reader, last))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _attach(self, hub: Hub, reader: TransportReader, last: str) -> None:
        try:
            await hub.attach(reader, last)
        except BrokerUnavailable:
            reader.close("history")

    def _respond(self, response: Any) -> None:
        self.handshake_complete = True
        self.close_sent = True
        self.conn.send_response(response)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()

    def _close_reader(self, reason: str) -> None:
        """Close the connection for the hub: slow reader, shutdown, history unreadable or a bad message."""
        if self.hub is not None and self.reader is not None:
            self.hub.remove(self.reader)
        if self.close_sent or self.transport.is_closing():
            return
        code, text = CLOSE_CODES.get(reason, (1008, reason[:120]))
        self.conn.send_close(code, text)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # A slow reader may never drain its buffer, so the close handshake gets a deadline.
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def send_receive_event_to_app(self) -> None:
        if self.reader is None:
            super().send_receive_event_to_app()
            return
        data = b"".join(self.frames)
        self.frames = []
        if self.close_sent or self.hub is None:
            return
        try:
            message = orjson.loads(data)
            if not isinstance(message, dict) or message.get("type") != "subscribe":
                raise FilterError("type", "only {'type': 'subscribe', ...} messages are accepted")
            flt = Filter.parse(message)
        except (orjson.JSONDecodeError, FilterError) as exc:
            self.reader.close(f"bad message: {exc}")
            return
        self.hub.refilter(self.reader, flt)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.hub is not None and self.reader is not None:
            self.hub.detach(self.reader)
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None

    def shutdown(self) -> None:
        if self.reader is not None and not self.close_sent and not self.transport.is_closing():
            self.stop_keepalive()
            self.reader.close("shutdown")
            return
        super().shutdown()

