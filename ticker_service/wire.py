"""Wire bytes of an event, built once and written to every reader as they are.

Server-to-client WebSocket frames are not masked (RFC 6455 §5.1), so one text frame serves every WebSocket reader.
An SSE event is the same bytes for every SSE reader; on a native HTTP/1.1 stream it is also wrapped as one chunk
of the chunked transfer coding (RFC 9112 §7.1), which is again the same for everyone.
"""

from __future__ import annotations

import random
import struct
from collections import OrderedDict

from .events import Event, event_key

_TEXT_FIN = 0x81
_CLOSE_FIN = 0x88


def ws_frame(payload: bytes, opcode_byte: int = _TEXT_FIN) -> bytes:
    """One unfragmented, unmasked WebSocket frame (a text frame unless told otherwise)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", opcode_byte, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", opcode_byte, 126, size)
    else:
        header = struct.pack("!BBQ", opcode_byte, 127, size)
    return header + payload


def ws_close_frame(code: int, reason: str = "") -> bytes:
    """An unmasked close frame; the reason is cut to fit the 123 bytes a control frame allows (between characters:
    a reason must stay valid UTF-8)."""
    cut = reason.encode()[:123].decode("utf-8", "ignore").encode()
    return ws_frame(struct.pack("!H", code) + cut, _CLOSE_FIN)


def http_chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked HTTP/1.1 body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEARTBEAT = b": keepalive\n\n"


def retry_ms(base: int = 1000, spread: int = 4000) -> int:
    """A reconnect delay with jitter, so that readers cut off together do not come back together."""
    return base + random.randrange(spread)


def sse_opening() -> bytes:
    """The first bytes of an event stream: a comment (so the stream shows as open) and a jittered ``retry:``."""
    return b": ticker stream\nretry: %d\n\n" % retry_ms()


SHARED_FRAMES = 1024  # recent events whose encodings the live fan-out and every replay share


class Frames:
    """One event, encoded at most once per transport however many readers get it."""

    __slots__ = ("_sse", "_ws", "event", "key")
    _shared: OrderedDict[int, Frames] = OrderedDict()  # id(event) -> its Frames (which keeps the event alive)

    @classmethod
    def of(cls, event: Event) -> Frames:
        """The ``Frames`` of ``event`` shared by everyone who sends this very object: its live fan-out and each
        reader's replay of it from the hub's window (in a reconnect storm, thousands of replays of a few events)."""
        found = cls._shared.get(id(event))
        if found is not None and found.event is event:
            return found
        frames = cls._shared[id(event)] = cls(event)
        if len(cls._shared) > SHARED_FRAMES:
            cls._shared.popitem(last=False)
        return frames

    def __init__(self, event: Event) -> None:
        self.event = event
        self.key = event_key(event.event_id)
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    @property
    def ws_text(self) -> bytes:
        """The JSON message (the payload of the WebSocket text frame)."""
        if self._ws is None:
            self._ws = self.event.to_message()
        return self._ws

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = self.event.to_sse()
        return self._sse


class Batch:
    """Events for the readers of one filter, joined into wire bytes once per transport."""

    __slots__ = ("_sse_chunk", "_ws_frames", "frames")

    def __init__(self, frames: list[Frames]) -> None:
        self.frames = frames
        self._ws_frames: bytes | None = None
        self._sse_chunk: bytes | None = None

    @property
    def ws_frames(self) -> bytes:
        if self._ws_frames is None:
            self._ws_frames = b"".join(ws_frame(f.ws_text) for f in self.frames)
        return self._ws_frames

    @property
    def sse_chunk(self) -> bytes:
        if self._sse_chunk is None:
            self._sse_chunk = http_chunk(b"".join(f.sse for f in self.frames))
        return self._sse_chunk
