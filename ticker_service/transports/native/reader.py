"""What the two native reader protocols (WebSocket ``websocket.py``, SSE ``sse.py``) share: taking a connection
over from the HTTP side, starting the hub's reader, and giving everything back when the connection ends."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from ...filters import Filter
from ...problems import problem_http
from ...readers import Sink, TransportReader
from ...security.readers import Grant
from . import NativeState


def expire_at(grant: Grant, close: Callable[[str], None]) -> asyncio.TimerHandle | None:
    """Close a reader when its token expires."""
    if grant.expires is None:
        return None
    return asyncio.get_running_loop().call_later(max(0.0, grant.expires - time.time()), close, "expired")


def limit_send_buffer(transport: asyncio.Transport, size: int) -> None:
    """Bound the kernel's send buffer, so that a reader that stops reading shows in the transport's buffer soon."""
    if not size:
        return  # the kernel's default: nothing to look up on the accept path
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class HeadFirst:
    """A resuming reader's sink while the answer to its opening (``head``) is unsent: the replay the hub hands it
    at once goes out in the same write (one system call and one segment, not two), then the reader writes to the
    socket itself. Whatever else is written first (a close frame) is preceded by :meth:`flush`."""

    __slots__ = ("head", "reader", "transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head: bytes | None = head
        self.reader: TransportReader | None = None

    def write(self, data: bytes) -> None:
        self.flush(data)

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def flush(self, data: bytes = b"") -> None:
        """Send the head (with ``data`` behind it) if it is still unsent; from now on the reader writes itself."""
        head, self.head = self.head, None
        if head is not None:
            self.transport.write(head + data)
        elif data:
            self.transport.write(data)
        if self.reader is not None:
            self.reader.sink = self.transport


class ReaderProtocol(asyncio.Protocol):
    """A reader's connection once the hub serves it natively; subclasses answer the request and speak the wire."""

    __slots__ = (
        "_expiry",
        "_head",
        "_release",
        "connections",
        "hub",
        "reader",
        "security",
        "send_buffer",
        "transport",
    )

    def __init__(self, state: NativeState, *, connections: set[Any], release: Callable[[], None] | None = None) -> None:
        self.hub = state.hub
        self.security = state.security
        self.send_buffer = state.send_buffer
        self.connections = connections  # uvicorn's: it calls shutdown() on each and waits for them to go
        self._release = release  # gives the connection's place back to the hub's ConnectionGuard
        self._expiry: asyncio.TimerHandle | None = None
        self._head: HeadFirst | None = None  # the answer to a resume's opening, while it waits for the replay
        self.transport: asyncio.Transport | None = None
        self.reader: TransportReader | None = None

    def take_over(self, transport: asyncio.BaseTransport) -> None:
        """Become the protocol of a connection another protocol has read the request from."""
        self.connection_made(transport)
        transport.set_protocol(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.connections.add(self)

    def refuse(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[dict[str, str]] = (),
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        """Answer the request with a problem document and end the connection."""
        assert self.transport is not None
        self.transport.write(problem_http(status, detail, errors=errors, headers=headers))
        self.transport.close()

    def start_reader(
        self, head: bytes, flt: Filter, last: str | None, grant: Grant, *, websocket: bool, beat: Callable[[], None]
    ) -> None:
        """Answer the request with ``head`` and hand the hub a reader writing straight to this socket; a resume's
        replay from memory goes out in the same write as ``head``."""
        transport = self.transport
        assert transport is not None
        sink: Sink = transport
        if last is None:
            transport.write(head)
        else:
            sink = self._head = HeadFirst(transport, head)
        self.reader = TransportReader(
            flt, self.hub.write_buffer_limit, sink, websocket=websocket, closer=self._close, beat=beat
        )
        limit_send_buffer(transport, self.send_buffer)
        if self._head is not None:
            self._head.reader = self.reader
        self.hub.connect(self.reader, last)
        self._answered()  # a resume with nothing replayed at once (the history is read in a task): the head alone
        self._expiry = expire_at(grant, self.reader.close)

    def _answered(self) -> None:
        """Make sure the head went out, before anything else is written to the socket."""
        if self._head is not None:
            self._head.flush()
            self._head = None

    def _close(self, reason: str) -> None:
        """Close for the hub (slow reader, shutdown, history unreadable, keepalive, expiry, a bad message)."""
        raise NotImplementedError

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost lets the hub forget the reader

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.reader is not None:
            self.hub.detach(self.reader)
        if self._expiry is not None:
            self._expiry.cancel()
        if self._release is not None:
            self._release()
            self._release = None
