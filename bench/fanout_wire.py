"""The fan-out readers' side of the wire: WebSocket and SSE client protocols, and the tally of what arrived.

How they parse, and why so sparingly, is told in ``bench/fanout_readers.py``, the process that runs them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

MARK = "FANOUT"
MARK_START = b"FANOUT "
MARK_END = b" |"
MAX_HEAD = 1 << 16  # a longer HTTP response head is refused
VIOLATIONS_LOGGED = 20  # per process; the rest are only counted


def marker(phase: int, seq: int, sent: float) -> str:
    """The text every published message starts with; the rest is padding."""
    return f"{MARK} {phase} {seq} {sent:.6f} |"


def parse_marker(mark: bytes) -> tuple[int, int, float] | None:
    """``b"FANOUT <phase> <seq> <sent>"`` (without the closing ``" |"``) → (phase, seq, sent)."""
    parts = mark.split(b" ")
    if len(parts) != 4 or parts[0] != MARK.encode():
        return None
    try:
        return int(parts[1]), int(parts[2]), float(parts[3])
    except ValueError:
        return None


def find_marker(data: bytes) -> tuple[int, int, float] | None:
    """The marker anywhere in a message: in a ticker event's JSON, or at the start of a peer's body."""
    start = data.find(MARK_START)
    end = data.find(MARK_END, start) if start >= 0 else -1
    return parse_marker(data[start:end]) if end >= 0 else None


class Message:
    """One published message as the readers of this process saw it: its marker and every arrival."""

    __slots__ = ("arrivals", "bytes", "phase", "sent", "seq")

    def __init__(self, phase: int, seq: int, sent: float) -> None:
        self.phase = phase
        self.seq = seq
        self.sent = sent
        self.arrivals: list[float] = []  # one per reader that got it
        self.bytes = 0


class Tally:
    """What the readers of this process received, per message."""

    def __init__(self) -> None:
        self.marks: dict[bytes, Message] = {}  # marker bytes -> message: each marker is parsed once per process
        self.messages: dict[tuple[int, int], Message] = {}  # (phase, seq) -> message
        self.duplicates: Counter[int] = Counter()
        self.foreign = 0  # messages without a marker (ticker's own events, other publishers)
        self.closed = 0  # readers whose connection ended after it opened
        self.violations = 0

    def record(self, seen: set[Message], data: bytes, start: int, stop: int, now: float) -> None:
        """One delivery: the message is ``data[start:stop]``; ``seen`` is the reader's own set (for duplicates)."""
        at = data.find(MARK_START, start, stop)
        if at < 0 or (end := data.find(MARK_END, at, stop)) < 0:
            self.foreign += 1
            return
        mark = data[at:end]
        message = self.marks.get(mark) or self.first(mark)
        if message is None:
            self.foreign += 1
        elif message in seen:
            self.duplicates[message.phase] += 1
        else:
            seen.add(message)
            message.arrivals.append(now)
            message.bytes += stop - start

    def first(self, mark: bytes) -> Message | None:
        """A marker not seen before in this process: parse it (one message may arrive with several markers)."""
        found = parse_marker(mark)
        if found is None:
            return None
        phase, seq, sent = found
        message = self.messages.get((phase, seq))
        if message is None:
            message = self.messages[phase, seq] = Message(phase, seq, sent)
        self.marks[mark] = message
        return message

    def received(self, phase: int) -> int:
        return sum(len(message.arrivals) for message in self.messages.values() if message.phase == phase)

    def report(self, phase: int) -> dict[str, object]:
        messages = sorted((m for m in self.messages.values() if m.phase == phase and m.arrivals), key=lambda m: m.seq)
        return {
            "event": "drained",
            "phase": phase,
            "received": self.received(phase),
            "duplicates": self.duplicates[phase],
            "bytes": sum(m.bytes for m in messages),
            "latencies_us": [round((now - m.sent) * 1e6) for m in messages for now in m.arrivals],
            "messages": {str(m.seq): [len(m.arrivals), max(m.arrivals), min(m.arrivals)] for m in messages},
            "foreign": self.foreign,
        }

    def violation(self, problem: str) -> None:
        self.violations += 1
        if self.violations <= VIOLATIONS_LOGGED:
            print(f"fanout_readers: protocol violation: {problem}", file=sys.stderr, flush=True)


def masked_frame(first: int, payload: bytes) -> bytes:
    """A client's control frame (``first``: FIN and opcode), its payload masked with a random key (RFC 6455 §5.3)."""
    size = len(payload)
    if size > 125:
        raise ValueError("a control frame carries at most 125 bytes")
    mask = os.urandom(4)
    if size:
        key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
        payload = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")
    return bytes((first, 0x80 | size)) + mask + payload


class Reader(asyncio.Protocol):
    """What both kinds of reader share: the handshake future, the tally, the messages seen (for duplicates)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.seen: set[Message] = set()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.closed = False

    def ready(self) -> None:
        if not self.opened.done():
            self.open = True
            self.opened.set_result(None)

    def fail(self, problem: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(problem))
        if self.transport is not None:
            self.transport.close()

    def violation(self, problem: str) -> None:
        """The server broke the protocol: say so and drop the connection (its messages then count as lost)."""
        self.tally.violation(problem)
        self.fail(f"protocol violation: {problem}")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open and not self.closed:
            self.tally.closed += 1
        self.closed = True
        self.fail(f"connection lost during the handshake: {exc}")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class WsReader(Reader):
    """A WebSocket client: ``websockets`` does the opening handshake, then the server's frames are parsed here."""

    def __init__(self, url: str, tally: Tally) -> None:
        super().__init__(tally)
        self.handshake: ClientProtocol | None = ClientProtocol(parse_uri(url), max_size=None)
        self.buffer = b""  # the response head so far, then the start of a frame not yet complete
        self.fragments: list[bytes] = []  # a fragmented message so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.handshake is not None
        self.handshake.send_request(self.handshake.connect())
        for chunk in self.handshake.data_to_send():
            transport.write(chunk)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.received(data, time.time())

    def received(self, data: bytes, now: float) -> None:
        """``data`` read from the socket at ``now`` (the read's time, or the kernel's receive timestamp)."""
        if self.handshake is not None:
            data = self.upgrade(data)
        elif self.buffer:
            data = self.buffer + data
            self.buffer = b""
        if data:
            self.frames(data, now)

    def upgrade(self, data: bytes) -> bytes:
        """Collect the response head and have ``websockets`` check it; return what follows it (frames)."""
        head = self.buffer + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = head
            if len(head) > MAX_HEAD:
                self.fail("response head too long")
            return b""
        self.buffer = b""
        status = head[: head.find(b"\r\n")]
        if status.split(b" ", 2)[1:2] != [b"101"]:
            self.fail(f"answered {status.decode('latin-1')!r}")
            return b""
        handshake, self.handshake = self.handshake, None
        assert handshake is not None
        handshake.receive_data(head[: end + 4])  # only the head: the frames after it are parsed here
        handshake.events_received()
        if handshake.handshake_exc is not None or handshake.state is not State.OPEN:
            self.fail(f"handshake failed: {handshake.handshake_exc}")
            return b""
        self.ready()
        return head[end + 4 :]

    def frames(self, data: bytes, now: float) -> None:
        """Parse every complete frame in ``data`` and keep the rest for the next read."""
        tally, seen = self.tally, self.seen
        size = len(data)
        pos = 0
        while size - pos >= 2:
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length >= 126:
                if length == 126:
                    if size - start < 2:
                        break
                    length = data[start] << 8 | data[start + 1]
                    start += 2
                    bad = length < 126
                elif length == 127:
                    if size - start < 8:
                        break
                    length = int.from_bytes(data[start : start + 8], "big")
                    start += 8
                    bad = length < 1 << 16 or length >= 1 << 63  # the most significant bit must be 0
                else:
                    self.violation("a masked frame from the server")
                    return
                if bad:
                    self.violation(f"frame length {length} not in its shortest form, or 2**63 or more")
                    return
            stop = start + length
            if stop > size:
                break
            pos = stop
            if (first == 0x81 or first == 0x82) and not self.fragments:  # a whole text or binary message
                tally.record(seen, data, start, stop, now)
            elif not self.rare_frame(first, data[start:stop], now):
                return
        self.buffer = data[pos:] if pos < size else b""

    def rare_frame(self, first: int, payload: bytes, now: float) -> bool:
        """A fragment or a control frame; False once the connection is closing."""
        fin, opcode = first & 0x80, first & 0x0F
        if first & 0x70:
            self.violation(f"reserved bits set ({first:#04x}): no extension was negotiated")
            return False
        if opcode >= 8:
            if not fin or len(payload) > 125:
                self.violation(f"control frame {opcode} fragmented or longer than 125 bytes")
                return False
            if opcode == 9:  # ping
                assert self.transport is not None
                self.transport.write(masked_frame(0x8A, payload))
            elif opcode == 8:  # close: echo the status code, then close the socket
                if len(payload) == 1:
                    self.violation("a close frame with a 1-byte payload")
                    return False
                assert self.transport is not None
                self.transport.write(masked_frame(0x88, payload[:2]))
                self.transport.close()
                return False
            elif opcode != 10:  # pong needs nothing
                self.violation(f"reserved control opcode {opcode}")
                return False
        elif opcode == 0:
            if not self.fragments:
                self.violation("a continuation frame with no message to continue")
                return False
            self.fragments.append(payload)
            if fin:
                data = b"".join(self.fragments)
                self.fragments = []
                self.tally.record(self.seen, data, 0, len(data), now)
        elif opcode in (1, 2):
            if self.fragments:
                self.violation("a new message before the fragmented one ended")
                return False
            self.fragments.append(payload)
        else:
            self.violation(f"reserved data opcode {opcode}")
            return False
        return True

    def violation(self, problem: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(masked_frame(0x88, (1002).to_bytes(2, "big")))  # protocol error
        super().violation(problem)


class SseReader(Reader):
    """``GET`` an event stream over HTTP/1.1 and hand each event's ``data`` to the tally."""

    def __init__(self, url: str, tally: Tally) -> None:
        super().__init__(tally)
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        ).encode()
        self.head = b""
        self.chunked = False
        self.raw = b""  # undecoded chunked body
        self.text = b""  # event-stream bytes not yet ending an event

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.open:
            data = self.response(data)
        if data and self.chunked:
            data = self.dechunk(data)
        if data:
            self.events(data, now)

    def response(self, data: bytes) -> bytes:
        """Collect the response head and check it; return what follows it (the body)."""
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self.fail("response head too long")
            return b""
        head, data = self.head[:end].decode("latin-1"), self.head[end + 4 :]
        self.head = b""
        status, *fields = head.split("\r\n")
        if status.split(" ", 2)[1:2] != ["200"]:
            self.fail(f"answered {status!r}")
            return b""
        headers = {
            name.strip().lower(): value.strip().lower() for name, _, value in (field.partition(":") for field in fields)
        }
        self.chunked = "chunked" in headers.get("transfer-encoding", "")
        self.ready()
        return data

    def dechunk(self, data: bytes) -> bytes:
        """The chunked transfer coding (RFC 9112 §7.1) removed; an incomplete chunk is kept for the next read."""
        raw = self.raw + data if self.raw else data
        body = b""
        more: list[bytes] | None = None  # when one read completes several chunks
        pos = 0
        while (line_end := raw.find(b"\r\n", pos)) >= 0:
            line = raw[pos:line_end]
            try:
                size = int(line, 16)
            except ValueError:
                try:
                    size = int(line.split(b";", 1)[0], 16)  # a chunk extension
                except ValueError:
                    self.violation(f"bad chunk size line {line[:40]!r}")
                    return b""
            start = line_end + 2
            stop = start + size
            if len(raw) < stop + 2:
                break
            if not raw.startswith(b"\r\n", stop):
                self.violation("a chunk not followed by CRLF")
                return b""
            if not body:
                body = raw[start:stop]
            else:
                more = more or [body]
                more.append(raw[start:stop])
            pos = stop + 2
        self.raw = raw[pos:] if pos < len(raw) else b""
        return b"".join(more) if more else body

    def events(self, data: bytes, now: float) -> None:
        """Hand the ``data`` of every complete event to the tally; keep the incomplete one for the next read."""
        text = self.text + data if self.text else data
        tail = b""
        if b"\r" in text:  # CRLF or CR line ends: make them LF (a CR at the very end may be half of a CRLF)
            if text.endswith(b"\r"):
                text, tail = text[:-1], b"\r"
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        tally, seen = self.tally, self.seen
        pos = 0
        while (end := text.find(b"\n\n", pos)) >= 0:
            if text.startswith(b"data:", pos):
                line = pos
            elif (line := text.find(b"\ndata:", pos, end)) >= 0:
                line += 1
            else:  # no data: a comment, or only id / event / retry fields
                pos = end + 2
                continue
            value = line + 6 if text.startswith(b" ", line + 5) else line + 5
            line_end = text.find(b"\n", value, end)
            if line_end < 0 or text.find(b"\ndata:", line_end, end) < 0:  # one data line: the usual case
                tally.record(seen, text, value, end if line_end < 0 else line_end, now)
            else:
                lines = [ln[5:].removeprefix(b" ") for ln in text[pos:end].split(b"\n") if ln.startswith(b"data:")]
                joined = b"\n".join(lines)
                tally.record(seen, joined, 0, len(joined), now)
            pos = end + 2
        self.text = text[pos:] + tail if pos < len(text) else tail
