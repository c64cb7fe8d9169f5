"""uvicorn's HTTP protocol for every request but a connection's first reader opening, which ``front`` answers.

A reader's request that comes later on a kept-alive connection (``GET /v1/events`` over HTTP/1.1, a WebSocket
opening of ``/v1/stream``) is handed, parsed, to the same native protocols the front protocol uses
(``sse.EventStreamProtocol``, ``websocket.StreamProtocol``). Every other request (and SSE over HTTP/1.0)
goes to the ASGI app as usual. The connection limits and the per-request deadline (slowloris) apply here too.

This is the one module that imports uvicorn (``front.py`` gets its types from here) and reaches into its internals:
it subclasses ``HttpToolsProtocol`` and overrides its parser callbacks (``on_message_begin``,
``on_headers_complete``, ``on_body``, ``on_message_complete``, ``handle_websocket_upgrade``) and uses its
attributes (``parser``, ``url``, ``scope``, ``headers``, ``transport``, ``connections``, ``app_state``,
``server_state``). ``pyproject.toml`` pins uvicorn to the range the tests run against.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ...problems import problem_http
from . import NativeState
from .reader import ReaderProtocol
from .sse import EventStreamProtocol
from .websocket import StreamProtocol

__all__ = ["Config", "ReaderHttpProtocol", "ServerState"]  # uvicorn's types, for front.py

logger = logging.getLogger("ticker.http")


class ReaderHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, handing readers' requests to the native reader protocols."""

    handed_over = False  # a native reader protocol has the connection: ignore what the parser still reports
    native: NativeState | None = None  # None: the app is not ticker's, uvicorn serves every request
    _client_ip: str | None = None  # counted by the ConnectionGuard until released
    _request_timer: asyncio.TimerHandle | None = None
    _refused: tuple[int, str] | None = None  # over a connection limit: answered once the headers are in

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.native = native = NativeState.of(self.app_state)
        if native is None:
            return
        ip = self.client[0] if self.client else ""
        self._refused = native.security.guard.admit(ip)
        if self._refused is None:
            self._client_ip = ip
        self._arm_request_timer()

    def take_over(
        self, transport: asyncio.Transport, *, client_ip: str | None, refused: tuple[int, str] | None
    ) -> None:
        """Become the protocol of a connection the front protocol admitted (or refused) and read the start of."""
        super().connection_made(transport)
        self.native = NativeState.of(self.app_state)
        if self.native is not None:
            self._client_ip = client_ip
            self._refused = refused
            self._arm_request_timer()
        transport.set_protocol(self)

    # -- handshake timeout: a client must send each request, headers and body, in time (slowloris) --------------
    def _arm_request_timer(self) -> None:
        if self.native is not None and self._request_timer is None:
            self._request_timer = self.loop.call_later(self.native.handshake_timeout, self._request_too_slow)

    def _request_too_slow(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.abort()

    def _disarm_request_timer(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _release_slot(self) -> None:
        if self._client_ip is not None and self.native is not None:
            self.native.security.guard.release(self._client_ip)
            self._client_ip = None

    def _hand_over_slot(self) -> Callable[[], None] | None:
        """The connection's place in the ConnectionGuard, for the protocol that takes over to give back."""
        ip, self._client_ip = self._client_ip, None
        return None if self.native is None else self.native.security.guard.releaser(ip)

    def on_message_begin(self) -> None:
        if self.handed_over:
            return  # a request pipelined behind a reader's: the connection is the stream's now
        super().on_message_begin()
        self._arm_request_timer()

    def on_headers_complete(self) -> None:
        if self.handed_over:
            return
        if self._refused is not None:
            self._disarm_request_timer()
            # Read the request first, so that the client sees the answer rather than a reset connection.
            self._problem(*self._refused, [], retry_after=1)
            return
        native = self.native
        if (
            native is not None
            and self.parser.get_method() == b"GET"
            and self.parser.get_http_version() == "1.1"
            and not self.parser.should_upgrade()
        ):
            if httptools.parse_url(self.url).path == b"/v1/events":
                stream = EventStreamProtocol(native, connections=self.connections, release=self._hand_over_slot())
                self._hand_over(stream)
                stream.open(self.url, self.headers, self.server_state.default_headers)
                return
        super().on_headers_complete()

    def _hand_over(self, protocol: ReaderProtocol) -> None:
        """Give the connection (and its place in the ConnectionGuard) to a native reader protocol."""
        self._disarm_request_timer()
        self.handed_over = True
        self.connections.discard(self)
        protocol.take_over(self.transport)

    def handle_websocket_upgrade(self) -> None:
        """Hand ``/v1/stream`` upgrades to the native reader protocol; other paths go to uvicorn's."""
        self._disarm_request_timer()
        if self._refused is not None:
            return  # already answered
        native = self.native
        if native is None or httptools.parse_url(self.url).path != b"/v1/stream":
            # uvicorn's WebSocket protocol takes the connection and never reports its end here: give the place back.
            release = self._hand_over_slot()
            if release is not None:
                release()
            super().handle_websocket_upgrade()
            return
        protocol = StreamProtocol(
            native, max_size=self.config.ws_max_size, connections=self.connections, release=self._hand_over_slot()
        )
        self._hand_over(protocol)
        scope = self.scope
        protocol.upgrade(
            scope["method"], scope["http_version"], self.url, scope["headers"], self.server_state.default_headers
        )

    def _problem(self, status: int, detail: str, errors: list[dict[str, str]], *, retry_after: int = 0) -> None:
        extra = [(b"retry-after", b"%d" % retry_after)] if retry_after else []
        self.transport.write(problem_http(status, detail, errors=errors, headers=extra))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused is not None and self.transport.is_closing():
            return  # a refused connection is being closed
        super().data_received(data)

    def on_body(self, body: bytes) -> None:
        if not self.handed_over and self._refused is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm_request_timer()  # the request is in; the app's answer takes the time it takes
        if not self.handed_over and self._refused is None:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_request_timer()
        self._release_slot()
        super().connection_lost(exc)
