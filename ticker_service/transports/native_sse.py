"""``GET /v1/events`` served natively in uvicorn: the fan-out writes SSE chunks to the socket itself.

This HTTP protocol is also where ``/v1/stream`` WebSocket upgrades are handed to ``native_ws.StreamProtocol``.

The HTTP/1.1 response is chunked; each batch of events is one pre-built chunk shared by all SSE readers of a filter.
Keepalive comments come from one hub-wide timer, not a task per reader. Every other request (and SSE over HTTP/1.0)
goes to the ASGI app as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..filters import FilterError
from ..frames import SSE_HEARTBEAT, http_chunk, sse_opening
from ..hub import Hub, TransportReader
from ..problems import problem_http
from ..reader_auth import Grant, ReaderTokenError, bearer, from_cookie
from ..security import Security
from .native_ws import StreamProtocol, expire_at, limit_send_buffer
from .resume import read_subscription

logger = logging.getLogger("ticker.sse")

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-store\r\n"
    b"x-accel-buffering: no\r\n"
    b"x-content-type-options: nosniff\r\n"
    b"transfer-encoding: chunked\r\n"
)
END = b"0\r\n\r\n"
HEARTBEAT = http_chunk(SSE_HEARTBEAT)
CLOSE_AFTER_SECONDS = 10.0


def handshake_timeout(app_state: dict[str, object]) -> float:
    """Seconds a client has to send each request, headers and body (against slowloris)."""
    settings = app_state.get("ticker_settings")
    return float(getattr(settings, "handshake_timeout_seconds", 10.0))


class ReaderHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with ``GET /v1/events`` readers attached to the hub directly.

    It serves what the front protocol (``front.FrontProtocol``) hands over: every request but a connection's first
    WebSocket opening of ``/v1/stream``.
    """

    reader: TransportReader | None = None
    hub: Hub | None = None
    security: Security | None = None
    _client_ip: str | None = None  # counted by the ConnectionGuard until released
    _request_timer: asyncio.TimerHandle | None = None
    _expiry: asyncio.TimerHandle | None = None
    _refused: tuple[int, str] | None = None  # over a connection limit: answered once the headers are in

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        security = self.app_state.get("ticker_security")
        if not isinstance(security, Security):
            return
        self.security = security
        ip = self.client[0] if self.client else ""
        self._refused = security.guard.admit(ip)
        if self._refused is None:
            self._client_ip = ip
        self._arm_request_timer()

    def take_over(
        self, transport: asyncio.Transport, *, client_ip: str | None, refused: tuple[int, str] | None
    ) -> None:
        """Serve a connection the front protocol admitted (or refused) and read the start of."""
        super().connection_made(transport)
        security = self.app_state.get("ticker_security")
        if isinstance(security, Security):
            self.security = security
            self._client_ip = client_ip
            self._refused = refused
            self._arm_request_timer()

    # -- handshake timeout: a client must send each request, headers and body, in time (slowloris) --------------
    def _arm_request_timer(self) -> None:
        if self.security is not None and self._request_timer is None:
            self._request_timer = self.loop.call_later(handshake_timeout(self.app_state), self._request_too_slow)

    def _request_too_slow(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.abort()

    def _disarm_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _release_slot(self) -> None:
        if self._client_ip is not None and self.security is not None:
            self.security.guard.release(self._client_ip)
            self._client_ip = None

    def _hand_over_slot(self) -> Callable[[], None] | None:
        """The connection's place in the ConnectionGuard, for the WebSocket protocol to give back when it ends."""
        ip, self._client_ip = self._client_ip, None
        security = self.security
        if ip is None or security is None:
            return None
        return lambda: security.guard.release(ip)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_request_timer()

    def on_headers_complete(self) -> None:
        if self._refused is not None:
            self._disarm_request_timer()
            # Read the request first, so that the client sees the answer rather than a reset connection.
            self._problem(*self._refused, [], retry_after=1)
            return
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
        grant = Grant()
        # The public stream: any page may embed the ticker (``*``, never with credentials). A listed origin gets
        # its own name and credentials instead, so that its pages may send the reader cookie.
        cors: list[tuple[bytes, bytes]] = [(b"access-control-allow-origin", b"*")]
        if self.security is not None:
            wanted = (b"authorization", b"cookie", b"origin")
            headers = {k.decode(): v.decode("latin-1") for k, v in self.headers if k in wanted}
            cors = self.security.origins.cors_headers(headers.get("origin")) or cors
            try:
                token = bearer(headers.get("authorization")) or from_cookie(headers.get("cookie"))
                grant = self.security.readers.verify(token)
            except ReaderTokenError as exc:
                self._problem(401, str(exc), [{"field": "Authorization", "message": str(exc)}])
                return
            flt = self.security.readers.apply(flt, grant)
        self._disarm_request_timer()  # an event stream: the request is complete, and the stream lives on
        self.hub = hub
        self.reader = TransportReader(
            flt, hub.write_buffer_limit, self.transport, websocket=False, closer=self._close_reader, beat=self._beat
        )
        limit_send_buffer(self.transport, hub.send_buffer)
        head = [HEAD]
        for name, value in [*self.server_state.default_headers, *cors]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", http_chunk(sse_opening())]))
        hub.connect(self.reader, last)
        self._expiry = expire_at(grant, self.reader.close)

    def _beat(self) -> None:
        self.transport.write(HEARTBEAT)

    def handle_websocket_upgrade(self) -> None:
        """Hand ``/v1/stream`` upgrades to the native reader protocol; other paths go to uvicorn's."""
        self._disarm_request_timer()
        if self._refused is not None:
            return  # already answered
        hub = self.app_state.get("ticker_hub")
        if not isinstance(hub, Hub) or httptools.parse_url(self.url).path != b"/v1/stream":
            # uvicorn's WebSocket protocol takes the connection and never reports its end here: give the place back.
            release = self._hand_over_slot()
            if release is not None:
                release()
            super().handle_websocket_upgrade()
            return
        self.connections.discard(self)
        protocol = StreamProtocol(
            hub,
            max_size=self.config.ws_max_size,
            connections=self.connections,
            security=self.security,
            release=self._hand_over_slot(),
        )
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        scope = self.scope
        protocol.upgrade(
            scope["method"], scope["http_version"], self.url, scope["headers"], self.server_state.default_headers
        )

    def _problem(self, status: int, detail: str, errors: list[dict[str, str]], *, retry_after: int = 0) -> None:
        extra = [(b"retry-after", b"%d" % retry_after)] if retry_after else []
        self.transport.write(problem_http(status, detail, errors=errors, headers=extra))
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
        if self.reader is not None or (self._refused is not None and self.transport.is_closing()):
            return  # an event stream reads nothing more from its client; a refused one is being closed
        super().data_received(data)

    def on_body(self, body: bytes) -> None:
        if self.reader is None and self._refused is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm_request_timer()  # the request is in; the app's answer takes the time it takes
        if self.reader is None and self._refused is None:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_timer()
        self._release_slot()
        if self._expiry is not None:
            self._expiry.cancel()
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
