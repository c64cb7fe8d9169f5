"""A lean HTTP/2 client for the push services: many concurrent requests on few kept-open TLS connections.

httpx (httpcore over anyio) cost ~1 ms of worker CPU per push here, most of it in one TLS record and one system
call per frame and in per-request machinery. A push send is one small POST repeated for every device, so this
client speaks ``h2`` directly over an asyncio protocol: the frames of every request started in one turn of the event
loop go out in one write, and one read handles every answer that arrived.

Failures keep httpx's exception types, which the push jobs map to outcomes (``jobs._send``): a request that never
went out raises :class:`httpx.ConnectError`; one the server did not process (a ``GOAWAY`` naming an older stream, a
``REFUSED_STREAM`` reset) :class:`httpx.RemoteProtocolError` starting with ``ConnectionTerminated``; one cut off
after it went out :class:`httpx.ReadError` (it may have been delivered).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
import httpx
import orjson

RECEIVE_WINDOW = 16 * 1024 * 1024  # answers are small; never make the server wait for a WINDOW_UPDATE
# Streams to open before the server's SETTINGS say how many it allows: RFC 9113 recommends servers allow at least
# 100. Past that, never more than MAX_STREAMS on one connection, whatever the server allows.
FIRST_STREAMS = 100
MAX_STREAMS = 1000
Origin = tuple[str, int]  # host, port (https only)


@dataclass(slots=True)
class Response:
    """The parts of an answer the bridges read (the names httpx uses)."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


@dataclass(slots=True)
class _Stream:
    future: asyncio.Future[Response]
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    pending: bytes = b""  # request body still waiting for flow-control window


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: a few more bytes per request, and no per-byte Python loop for every device's
    path (the values that repeat — the authorization, the alert's headers — are indexed either way)."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


class _Connection(asyncio.Protocol):
    """One TLS connection and its h2 state machine. Writes are coalesced: one flush per loop turn."""

    def __init__(self, on_free: asyncio.Event) -> None:
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,  # Http2Client.post builds them: lower-case, pseudo-headers first
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config)
        self.h2.encoder = _PlainEncoder()
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.blocked: list[int] = []  # streams whose body waits for window, in order
        self.closed = False
        self.goaway = False
        self.max_streams = FIRST_STREAMS
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # done once the socket is closed
        self.on_free = on_free  # set whenever a stream slot may have opened
        self._flush_scheduled = False
        self._loop = asyncio.get_running_loop()

    # -- asyncio.Protocol --------------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.ENABLE_PUSH: 0}
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(RECEIVE_WINDOW)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail_all(httpx.RemoteProtocolError(f"HTTP/2 protocol error: {exc}"))
            self._close()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        self._fail_all(httpx.ReadError(f"connection lost: {exc or 'closed by the server'}"))
        self.on_free.set()

    # -- requests ----------------------------------------------------------------------------------------------------

    def usable(self) -> bool:
        return not self.closed and not self.goaway

    def has_room(self) -> bool:
        return len(self.streams) < self.max_streams

    async def request(self, headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
        try:
            stream_id = self.h2.get_next_available_stream_id()
            self.h2.send_headers(stream_id, headers, end_stream=not body)
        except h2.exceptions.H2Error as exc:  # the connection cannot take it: nothing of it was written
            self.goaway = True
            raise httpx.ConnectError(f"HTTP/2 connection unusable: {exc!r}") from exc
        stream = _Stream(self._loop.create_future())
        self.streams[stream_id] = stream
        if body:
            stream.pending = body
            self._send_body(stream_id, stream)
        self._schedule_flush()
        try:
            return await stream.future
        except asyncio.CancelledError:
            if stream_id in self.streams and not self.closed:
                del self.streams[stream_id]
                try:
                    self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                except h2.exceptions.H2Error:
                    pass
                self._schedule_flush()
                self.on_free.set()
            raise

    def _send_body(self, stream_id: int, stream: _Stream) -> bool:
        """Send what the flow-control windows allow; ``False`` (and queued) if some of the body has to wait."""
        while stream.pending:
            size = min(
                len(stream.pending), self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if size <= 0:
                if stream_id not in self.blocked:
                    self.blocked.append(stream_id)
                return False
            chunk, stream.pending = stream.pending[:size], stream.pending[size:]
            self.h2.send_data(stream_id, chunk, end_stream=not stream.pending)
        return True

    def _unblock(self) -> None:
        waiting, self.blocked = self.blocked, []
        for stream_id in waiting:
            stream = self.streams.get(stream_id)
            if stream is not None and not self._send_body(stream_id, stream):
                # Still no window: keep it and every later one waiting, in order.
                self.blocked.extend(s for s in waiting[waiting.index(stream_id) + 1 :] if s not in self.blocked)
                break

    # -- events ------------------------------------------------------------------------------------------------------

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                for name, value in event.headers:
                    key, text = bytes(name).decode("ascii", "replace"), bytes(value).decode("latin-1")
                    if key == ":status":
                        stream.status = int(text)
                    else:
                        stream.headers[key] = text
        elif isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                if not stream.future.done():
                    stream.future.set_result(Response(stream.status, stream.headers, bytes(stream.body)))
                self.on_free.set()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                if not stream.future.done():
                    if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                        error: Exception = httpx.RemoteProtocolError("ConnectionTerminated: stream refused")
                    else:
                        error = httpx.ReadError(f"stream reset by the server: {event.error_code!r}")
                    stream.future.set_exception(error)
                self.on_free.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            error = httpx.RemoteProtocolError(f"ConnectionTerminated: GOAWAY {event.error_code!r}, last stream {last}")
            for stream_id in [s for s in self.streams if s > last]:
                stream = self.streams.pop(stream_id)
                if not stream.future.done():
                    stream.future.set_exception(error)
            if not self.streams:
                self._close()
            self.on_free.set()
        elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.max_streams = min(self.h2.remote_settings.max_concurrent_streams, MAX_STREAMS)
            if self.blocked:
                self._unblock()
            self.on_free.set()

    # -- writing -----------------------------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)
        if self.goaway and not self.streams:
            self._close()

    def _fail_all(self, error: Exception) -> None:
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if not stream.future.done():
                stream.future.set_exception(error)

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        if not self.closed:
            try:
                self.h2.close_connection()
                self._flush()
            except h2.exceptions.H2Error:
                pass
        self._close()


class Http2Client:
    """Kept-open HTTP/2 connections per origin, at most ``connections`` each; a new one only when every open one
    has all the streams its server allows in use."""

    def __init__(self, context: ssl.SSLContext, timeout: float, connections: int = 4) -> None:
        context.set_alpn_protocols(["h2"])
        self.context = context
        self.timeout = timeout  # for connecting: each send has its own bound in the push jobs
        self.connections = max(1, connections)
        self._pools: dict[Origin, list[_Connection]] = {}
        self._connecting: dict[Origin, asyncio.Task[_Connection]] = {}
        self._free: dict[Origin, asyncio.Event] = {}
        self._origins: dict[str, tuple[Origin, bytes]] = {}

    def _origin(self, url: str) -> tuple[Origin, bytes, bytes]:
        """(host, port), ``:authority`` and ``:path`` of an https URL."""
        head, sep, rest = url.partition("://")
        slash = rest.find("/")
        netloc, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
        known = self._origins.get(netloc)
        if known is None:
            parts = urlsplit(url)
            if head != "https" or not sep or parts.hostname is None:
                raise httpx.ConnectError(f"not an https URL: {url[:100]}")
            known = ((parts.hostname, parts.port or 443), netloc.encode())
            if len(self._origins) < 1000:
                self._origins[netloc] = known
        return known[0], known[1], path.encode()

    async def post(self, url: str, content: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``content``; ``headers`` names in lower case (HTTP/2 requires it)."""
        origin, authority, path = self._origin(url)
        connection = await self._connection(origin)
        # A device's path and length are not worth a place in the HPACK table: they would evict what repeats.
        request: list[Any] = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", authority)]
        request.append(hpack.NeverIndexedHeaderTuple(b":path", path))
        request += [(k.encode(), v.encode()) for k, v in headers.items()]
        request.append(hpack.NeverIndexedHeaderTuple(b"content-length", str(len(content)).encode()))
        return await connection.request(request, content)

    async def _connection(self, origin: Origin) -> _Connection:
        free = self._free.setdefault(origin, asyncio.Event())
        while True:
            pool = self._pools.setdefault(origin, [])
            pool[:] = [c for c in pool if not c.closed]
            for connection in pool:
                if connection.usable() and connection.has_room():
                    return connection
            if sum(c.usable() for c in pool) < self.connections:
                task = self._connecting.get(origin)
                if task is None:
                    task = asyncio.ensure_future(self._connect(origin, free))
                    self._connecting[origin] = task
                    task.add_done_callback(lambda _t: self._connecting.pop(origin, None))
                connection = await asyncio.shield(task)
                if connection not in pool:
                    pool.append(connection)
                if connection.usable() and connection.has_room():
                    return connection
                continue
            free.clear()
            await free.wait()

    async def _connect(self, origin: Origin, free: asyncio.Event) -> _Connection:
        loop = asyncio.get_running_loop()
        host, port = origin
        try:
            async with asyncio.timeout(self.timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(free), host, port, ssl=self.context, server_hostname=host
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        assert protocol.transport is not None
        ssl_object = protocol.transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
            protocol.close()
            raise httpx.ConnectError(f"{host}:{port} does not speak HTTP/2")
        return protocol

    async def aclose(self) -> None:
        """Say GOAWAY and close every connection; wait (briefly) for the TLS close to finish."""
        connections = [c for pool in self._pools.values() for c in pool]
        self._pools.clear()
        for connection in connections:
            connection.close()
        for connection in connections:
            try:
                async with asyncio.timeout(1.0):
                    await asyncio.shield(connection.lost)
            except TimeoutError:
                if connection.transport is not None:
                    connection.transport.abort()
