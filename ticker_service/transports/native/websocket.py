"""``/v1/stream`` served natively: a small asyncio protocol per reader; the fan-out writes frames to its socket.

Going through ASGI costs a task per connection and, per message, a coroutine step, an ASGI message dict and a
frame serialisation. Here the hub writes the pre-built frame bytes (the same for every reader) with one
``transport.write``. ``handshake`` answers the opening request and ``inbound`` reads what the reader sends
(``subscribe`` messages, pongs, pings, close); keepalive pings come from the hub's one timer.

The front protocol (``front.FrontProtocol``), or for a later request on a kept-alive connection uvicorn's HTTP
protocol (``http.ReaderHttpProtocol``), hands a WebSocket opening of ``/v1/stream`` to this class; any other
WebSocket path goes to uvicorn's own WebSocket protocol and the ASGI app.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from ...filters import Filter, FilterError
from ...security.readers import SUBPROTOCOL, ReaderTokenError, bearer, from_subprotocols
from ...wire import ws_close_frame, ws_frame
from ..close import closing
from ..resume import subscription_of_query
from . import NativeState, inbound
from .handshake import Refusal, read_opening, switching_protocols
from .inbound import CLOSE, PONG, TEXT, Fragments, FrameError, close_code, read_frames, read_message
from .reader import ReaderProtocol

logger = logging.getLogger("ticker.ws")

PING = ws_frame(b"", 0x89)
_PONG = 0x8A


class State(enum.IntEnum):
    """A reader's WebSocket connection (RFC 6455 §4-7), as websockets' ``State``."""

    CONNECTING = 0  # the opening request is being answered
    OPEN = 1  # the reader gets events and may send messages
    CLOSING = 2  # a close frame went out (or the connection failed): the reader's, or the socket's end, is awaited
    CLOSED = 3  # the TCP connection is gone


CLOSE_TIMEOUT = 10.0


class StreamProtocol(ReaderProtocol):
    """One WebSocket reader of ``/v1/stream``: handshake, inbound frames, close; outbound data comes from the hub.

    The opening request arrives already split into headers (by the front protocol, or by uvicorn's parser for a
    request that follows another on a kept-alive connection); :meth:`upgrade` answers it.
    """

    __slots__ = ("_awaiting_pong", "_close_timer", "_fragments", "_inbound", "_max_size", "_state")

    def __init__(
        self,
        state: NativeState,
        *,
        max_size: int,
        connections: set[Any],
        release: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(state, connections=connections, release=release)
        self._max_size = max_size
        self._state = State.CONNECTING
        self._inbound = b""  # the start of a frame not wholly received yet
        self._fragments: Fragments | None = None  # a message coming in fragments (rare)
        self._close_timer: asyncio.TimerHandle | None = None
        self._awaiting_pong = False

    # -- asyncio.Protocol --------------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._state is State.CONNECTING:
            return  # a client may not send before the handshake's answer; a refused one is being closed
        try:
            frames, self._inbound = read_frames(self._inbound + data if self._inbound else data, self._max_size)
            while frames:  # then again on what is left: a bad frame behind these is refused after them
                for opcode, fin, payload in frames:
                    if opcode == PONG:
                        self._awaiting_pong = False
                    elif opcode == inbound.PING:
                        if self._state is State.OPEN:
                            self._write(ws_frame(payload, _PONG))
                    elif opcode == CLOSE:
                        self._close_received(payload)
                        return
                    elif self._state is State.OPEN:
                        message, self._fragments = read_message(opcode, fin, payload, self._fragments, self._max_size)
                        if message is not None:
                            self._message(*message)
                frames, self._inbound = read_frames(self._inbound, self._max_size)
        except FrameError as exc:
            self._fail(exc.code, exc.reason)

    def upgrade(
        self,
        method: str,
        http_version: str,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        default_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Answer an opening request (header names in lower case): ``101`` and a reader, or a problem response."""
        assert self.transport is not None
        try:
            opening = read_opening(method, http_version, headers)
            _, _, query = target.decode("latin-1").partition("?")
            try:
                flt, last = subscription_of_query(query)
            except FilterError as exc:
                raise Refusal(400, exc.message, errors=[{"field": exc.field, "message": exc.message}]) from None
            if not self.security.origins.allows(opening.origin, opening.host):
                raise Refusal(403, "This Origin may not open the stream.")
            try:
                token = bearer(opening.authorization) or from_subprotocols(opening.subprotocols)
                grant = self.security.readers.verify(token)
            except ReaderTokenError as exc:
                raise Refusal(401, str(exc)) from None
            flt = self.security.readers.apply(flt, grant)
        except Refusal as refusal:
            self.refuse(refusal.status, refusal.detail, errors=refusal.errors, headers=refusal.headers)
            return
        # Answer "ticker" if offered (browsers sending a token as ``ticker.bearer.<jwt>`` offer it too).
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in opening.subprotocols else None
        answer = switching_protocols(opening, subprotocol, default_headers)
        self._state = State.OPEN
        self.start_reader(answer, flt, last, grant, websocket=True, beat=self._beat)

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = State.CLOSED
        self._fragments = None
        super().connection_lost(exc)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    def shutdown(self) -> None:
        """uvicorn is stopping: tell the reader to reconnect elsewhere (1012), or just close."""
        if self.reader is not None and self._state is State.OPEN:
            self.reader.close("shutdown")
        elif self.transport is not None:
            self.transport.close()

    # -- protocol ----------------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(data)

    def _close_received(self, payload: bytes) -> None:
        """The reader's close frame: answer it (unless it answers ours) and end the connection (RFC 6455 §5.5.1)."""
        code = close_code(payload)
        self._end(ws_close_frame(code) if code is not None else ws_frame(b"", 0x88))

    def _fail(self, code: int, reason: str) -> None:
        """The reader broke the protocol: a close frame saying how, then the connection ends."""
        self._end(ws_close_frame(code, reason))

    def _end(self, close_frame: bytes) -> None:
        """Send ``close_frame`` if the connection is still open, and close it now."""
        assert self.transport is not None
        if self._state is State.OPEN:
            self._write(close_frame)
        self._state = State.CLOSING
        if self.reader is not None:
            self.hub.remove(self.reader)
        self.transport.close()

    def _message(self, opcode: int, payload: bytes) -> None:
        """A whole message from the reader (a text one is valid UTF-8): only ``subscribe`` is understood."""
        assert self.reader is not None
        try:
            if opcode != TEXT:
                raise FilterError("type", "send subscribe messages as text")
            message = orjson.loads(payload)
            if not isinstance(message, dict) or message.get("type") != "subscribe":
                raise FilterError("type", "only {'type': 'subscribe', ...} messages are accepted")
            flt = Filter.parse(message).keeping_access(self.reader.filter)
        except (orjson.JSONDecodeError, FilterError) as exc:
            self.reader.close(f"bad message: {exc}")
            return
        self.hub.refilter(self.reader, flt)

    def _beat(self) -> None:
        """Called by the hub's keepalive timer: a reader that did not answer the last ping is gone."""
        assert self.reader is not None and self.transport is not None
        if self._awaiting_pong:
            self.reader.close("keepalive")
            return
        self._awaiting_pong = True
        self.transport.write(PING)

    def _close(self, reason: str) -> None:
        """Close for the hub: slow reader, shutdown, history unreadable, keepalive or a bad message."""
        assert self.reader is not None and self.transport is not None
        self.hub.remove(self.reader)
        if self._state is not State.OPEN or self.transport.is_closing():
            return
        self._answered()
        code, text = closing(reason)
        self.transport.write(ws_close_frame(code, text))
        self._state = State.CLOSING
        # A slow reader may never drain its buffer, so the closing handshake gets a deadline.
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)
