"""``GET /v1/events`` served natively: a small asyncio protocol per SSE reader; the fan-out writes chunks to it.

The HTTP/1.1 response is chunked; each batch of events is one pre-built chunk shared by all SSE readers of a filter.
Keepalive comments come from one hub-wide timer, not a task per reader. Once the response has started, the
connection carries nothing but the stream, so it needs none of uvicorn's per-request state: the front protocol
(a connection's first request) or uvicorn's HTTP protocol (a later request on a kept-alive connection) hands the
parsed request to :meth:`EventStreamProtocol.open` and this object alone holds the reader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from ...filters import FilterError
from ...security.readers import ReaderTokenError, bearer, from_cookie
from ...wire import SSE_HEARTBEAT, http_chunk, sse_opening
from ..resume import subscription_of_query
from .reader import ReaderProtocol

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
_WANTED = frozenset({b"authorization", b"cookie", b"origin", b"last-event-id"})


class EventStreamProtocol(ReaderProtocol):
    """One SSE reader of ``/v1/events``: the response head, then whatever the hub writes, until either side ends."""

    __slots__ = ()

    def open(
        self, target: bytes, headers: Iterable[tuple[bytes, bytes]], default_headers: Iterable[tuple[bytes, bytes]]
    ) -> None:
        """Answer ``GET /v1/events`` (header names in lower case): the stream, or a problem response."""
        assert self.transport is not None
        wanted = {k.decode(): v.decode("latin-1") for k, v in headers if k in _WANTED}
        _, _, query = target.decode("latin-1").partition("?")
        try:
            flt, last = subscription_of_query(query, wanted.get("last-event-id"))
        except FilterError as exc:
            self.refuse(400, exc.message, errors=[{"field": exc.field, "message": exc.message}])
            return
        # The public stream: any page may embed the ticker (``*``, never with credentials). A listed origin gets
        # its own name and credentials instead, so that its pages may send the reader cookie.
        cors = self.security.origins.cors_headers(wanted.get("origin")) or [(b"access-control-allow-origin", b"*")]
        try:
            token = bearer(wanted.get("authorization")) or from_cookie(wanted.get("cookie"))
            grant = self.security.readers.verify(token)
        except ReaderTokenError as exc:
            self.refuse(401, str(exc), errors=[{"field": "Authorization", "message": str(exc)}])
            return
        flt = self.security.readers.apply(flt, grant)
        head = [HEAD]
        for name, value in [*default_headers, *cors]:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        head.append(http_chunk(sse_opening()))
        self.start_reader(b"".join(head), flt, last, grant, websocket=False, beat=self._beat)

    def data_received(self, data: bytes) -> None:
        """An event stream reads nothing more from its client."""

    def _beat(self) -> None:
        assert self.transport is not None
        self.transport.write(HEARTBEAT)

    def _close(self, reason: str) -> None:
        """End the stream (slow reader, shutdown, history unreadable): the client reconnects with Last-Event-ID."""
        assert self.transport is not None and self.reader is not None
        self.hub.remove(self.reader)
        if self.transport.is_closing():
            return
        self._answered()
        self.transport.write(END)
        self.transport.close()
        # A slow reader may never drain its buffer: do not keep its socket around for ever.
        asyncio.get_running_loop().call_later(CLOSE_AFTER_SECONDS, self.transport.abort)

    def shutdown(self) -> None:
        """uvicorn is stopping: end the stream (the client resumes elsewhere), or just close."""
        if self.reader is not None:
            self.reader.close("shutdown")
        elif self.transport is not None:
            self.transport.close()
