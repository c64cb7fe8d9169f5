"""``GET /v1/events`` served natively in uvicorn: the fan-out writes SSE chunks to the socket itself.

This HTTP protocol is also where ``/v1/stream`` WebSocket upgrades are handed to ``native_ws.StreamProtocol``.

The HTTP/1.1 response is chunked; each batch of events is one pre-built chunk shared by all SSE readers of a filter.
Keepalive comments come from one hub-wide timer, not a task per reader. Every other request (and SSE over HTTP/1.0)
goes to the ASGI app as usual.
"""

from __future__ import annotations

import email.utils
import logging
from urllib.parse import parse_qsl

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..filters import FilterError
from ..frames import SSE_HEARTBEAT, http_chunk, sse_opening
from ..hub import Hub, TransportReader
from ..problems import TITLES
from .native_ws import StreamProtocol, limit_send_buffer
from .resume import read_subscription

logger = logging.getLogger("ticker.sse")

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-store\r\n"
    b"x-accel-buffering: no\r\n"
    b"x-content-type-options: nosniff\r\n"
    b"access-control-allow-origin: *\r\n"  # public stream: pages on other origins may embed the ticker
    b"transfer-encoding: chunked\r\n"
)
END = b"0\r\n\r\n"
HEARTBEAT = http_chunk(SSE_HEARTBEAT)
CLOSE_AFTER_SECONDS = 10.0


class ReaderHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``GET /v1/events`` readers attached to the hub directly."""

    reader: TransportReader | None = None
    hub: Hub | None = None

    def on_headers_complete(self) -> None:
        hub = self.app_state.get("ticker_hub")
        if (
            isinstance(hub, Hub)
            and self.parser.get_method() == b"GET"
            and self.parser.get_http_version() == "1.1"
            and not self.parser.should_upgrade()
        ):
            url = httptools.parse_url(self.url)
            if url.path == b"/v1/events":
                self._serve_events(hub, (url.query or b"").decode("latin-1"))
                return
        super().on_headers_complete()

    def _serve_events(self, hub: Hub, query: str) -> None:
        last_header = next((v.decode("latin-1") for k, v in self.headers if k == b"last-event-id"), None)
        try:
            flt, last = read_subscription(dict(parse_qsl(query, keep_blank_values=True)), last_header)
        except FilterError as exc:
            self._problem(400, exc.message, [{"field": exc.field, "message": exc.message}])
            return
        self.hub = hub
        self.reader = TransportReader(
            flt, hub.write_buffer_limit, self.transport, websocket=False, closer=self._close_reader, beat=self._beat
        )
        limit_send_buffer(self.transport, hub.send_buffer)
        head = [HEAD]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", http_chunk(sse_opening())]))
        hub.connect(self.reader, last)

    def _beat(self) -> None:
        self.transport.write(HEARTBEAT)

    def handle_websocket_upgrade(self) -> None:
        """Hand ``/v1/stream`` upgrades to the native reader protocol; other paths go to uvicorn's."""
        hub = self.app_state.get("ticker_hub")
        if not isinstance(hub, Hub) or httptools.parse_url(self.url).path != b"/v1/stream":
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        request = [self.scope["method"].encode(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.scope["headers"]:
            request += [name, b": ", value, b"\r\n"]
        request.append(b"\r\n")
        protocol = StreamProtocol(hub, max_size=self.config.ws_max_size, connections=self.connections)
        protocol.connection_made(self.transport)
        protocol.data_received(b"".join(request))
        self.transport.set_protocol(protocol)

    def _problem(self, status: int, detail: str, errors: list[dict[str, str]]) -> None:
        body = orjson.dumps(
            {"type": "about:blank", "title": TITLES[status], "status": status, "detail": detail, "errors": errors}
        )
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\n"
            b"content-length: %d\r\ndate: %s\r\nconnection: close\r\n\r\n%s"
            % (status, TITLES[status].encode(), len(body), email.utils.formatdate(usegmt=True).encode(), body)
        )
        self.transport.close()

    def _close_reader(self, reason: str) -> None:
        """End the stream (slow reader, shutdown, history unreadable): the client reconnects with Last-Event-ID."""
        if self.hub is not None and self.reader is not None:
            self.hub.remove(self.reader)
        if self.transport.is_closing():
            return
        self.transport.write(END)
        self.transport.close()
        # A slow reader may never drain its buffer: do not keep its socket around for ever.
        self.loop.call_later(CLOSE_AFTER_SECONDS, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        if self.reader is not None:
            return  # an event stream reads nothing more from its client
        super().data_received(data)

    def on_body(self, body: bytes) -> None:
        if self.reader is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.reader is None:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.hub is not None and self.reader is not None:
            self.hub.detach(self.reader)
            self.transport.close()
            self.connections.discard(self)
            return
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self.reader is not None:
            self.reader.close("shutdown")
            return
        super().shutdown()
