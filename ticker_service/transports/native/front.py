"""The first request of every connection: a reader's WebSocket opening is answered here, the rest goes to uvicorn.

In a reconnect storm nearly every new connection is a reader: ``GET /v1/stream`` asking for a WebSocket, or
``GET /v1/events``. uvicorn's HTTP protocol would first build its per-connection state (an HTTP parser, loggers,
flow control, socket addresses) and a per-request ASGI scope, only to hand the connection over. This protocol,
uvicorn's ``http`` class, reads the request head itself; a well-formed reader's request (request line, header
syntax, no body) goes straight to :class:`~.websocket.StreamProtocol` or
:class:`~.sse.EventStreamProtocol`. Any other request, or anything it is not sure of, is handed with the
bytes read so far to :class:`~.http.ReaderHttpProtocol` (uvicorn's parser and the ASGI app), which
answers exactly as if it had read them itself. The connection limits and the request deadline apply from the
first byte either way.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any, cast

from . import NativeState
from .http import Config, ReaderHttpProtocol, ServerState
from .sse import EventStreamProtocol
from .websocket import StreamProtocol

HEAD_LIMIT = 8 * 1024  # a longer request head is not a plain opening: uvicorn's parser judges it
_REQUEST_LINE = re.compile(rb"GET (/v1/(stream|events)(?:\?[!-~]*)?) HTTP/1\.1")
# Header lines as RFC 9110 §5 allows them (a token, a colon, visible or tab/space/obs-text characters), each ending
# in CRLF: no bare CR or LF, no NUL or other controls, no obs-fold.
_HEADER_BLOCK = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
_BODY_HEADERS = (b"content-length", b"transfer-encoding")
# A bare CR or LF, or a control byte other than tab: no opening contains one, and a head that ends in bare LFs never
# shows the CRLF CRLF the front protocol waits for (uvicorn's parser refuses such a head at once).
_NOT_IN_AN_OPENING = re.compile(rb"\r[^\n]|(?<!\r)\n|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def cannot_be_an_opening(buffer: bytes, start: int = 0) -> bool:
    """Whether ``buffer``, a head not yet complete, holds a byte no reader's opening has (searched from ``start``,
    with the byte before it): it is uvicorn's parser's to judge now, not after more bytes or the deadline."""
    return _NOT_IN_AN_OPENING.search(buffer, max(0, start - 1)) is not None


def split_opening(head: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """The path's last part (``stream`` or ``events``), the target and the ``(lower-case name, value)`` headers of a
    reader's request head (up to and including the last header's CRLF), or ``None`` if the head is anything else
    or not certainly well-formed."""
    line_end = head.find(b"\r\n")
    request = _REQUEST_LINE.fullmatch(head, 0, line_end)
    if request is None or _HEADER_BLOCK.fullmatch(head, line_end + 2) is None:
        return None
    headers = []
    for line in head[line_end + 2 :].split(b"\r\n")[:-1]:
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in _BODY_HEADERS:
            return None  # a request with a body: uvicorn's parser reads (and refuses) it
        headers.append((name, value.strip(b" \t")))
    kind = request.group(2)
    if kind == b"events" and any(name == b"upgrade" for name, _ in headers):
        return None  # not an event stream request: uvicorn and the app answer it
    return kind, request.group(1), headers


class FrontProtocol(asyncio.Protocol):
    """Reads a connection's first request head and decides who serves the connection."""

    __slots__ = (
        "_buffer",
        "_client_ip",
        "_loop",
        "_refused",
        "_waiting",
        "app_state",
        "config",
        "native",
        "server_state",
        "transport",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.native = NativeState.of(app_state)  # None: the app is not ticker's, uvicorn serves every request
        self._loop = _loop  # uvloop passes none: uvicorn's protocol looks it up if it takes over
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._client_ip: str | None = None  # counted by the ConnectionGuard until released or passed on
        self._refused: tuple[int, str] | None = None
        self._waiting = False  # in the native state's deadlines

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server_state.connections.add(self)  # type: ignore[arg-type]  # uvicorn calls shutdown() on each
        native = self.native
        if native is not None:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if isinstance(peer, tuple) else ""
            self._refused = native.security.guard.admit(ip)
            if self._refused is None:
                self._client_ip = ip
            native.deadlines.add(self)
            self._waiting = True

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > HEAD_LIMIT or cannot_be_an_opening(buffer, len(self._buffer)):
                self._hand_over(buffer)
            else:
                self._buffer = buffer
            return
        native = self.native
        opening = split_opening(buffer[: end + 2]) if self._refused is None and native is not None else None
        if opening is None:
            self._hand_over(buffer)
            return
        assert native is not None and self.transport is not None
        self._stop_waiting()
        connections = self.server_state.connections
        connections.discard(self)
        kind, target, headers = opening
        default_headers = self.server_state.default_headers
        if kind == b"events":
            stream = EventStreamProtocol(native, connections=connections, release=self._pass_slot())
            stream.take_over(self.transport)
            stream.open(target, headers, default_headers)
            return
        protocol = StreamProtocol(
            native, max_size=self.config.ws_max_size, connections=connections, release=self._pass_slot()
        )
        protocol.take_over(self.transport)
        protocol.upgrade("GET", "1.1", target, headers, default_headers)
        if len(buffer) > end + 4:
            protocol.data_received(buffer[end + 4 :])

    def _hand_over(self, buffer: bytes) -> None:
        """Let uvicorn's HTTP protocol serve the connection, from the bytes read so far."""
        assert self.transport is not None
        self._stop_waiting()
        self.server_state.connections.discard(self)
        protocol = ReaderHttpProtocol(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self._loop
        )
        ip, self._client_ip = self._client_ip, None
        protocol.take_over(self.transport, client_ip=ip, refused=self._refused)
        protocol.data_received(buffer)

    def _pass_slot(self) -> Callable[[], None] | None:
        """The connection's place in the ConnectionGuard, for the protocol that takes over to give back."""
        ip, self._client_ip = self._client_ip, None
        return None if self.native is None else self.native.security.guard.releaser(ip)

    def too_slow(self) -> None:
        """The request head did not arrive in time (slowloris): called by the native state's deadlines."""
        self._waiting = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _stop_waiting(self) -> None:
        if self._waiting:
            self._waiting = False
            assert self.native is not None
            self.native.deadlines.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self.server_state.connections.discard(self)
        if self._client_ip is not None and self.native is not None:
            self.native.security.guard.release(self._client_ip)
            self._client_ip = None

    def shutdown(self) -> None:
        """uvicorn is stopping: a connection that has not sent its request yet just closes."""
        if self.transport is not None:
            self.transport.close()
