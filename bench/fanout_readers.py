"""One client process of the fan-out benchmark: many WebSocket or SSE readers on one asyncio loop.

    python -m bench.fanout_readers --url URL --transport ws|sse --readers N --format ticker|raw

It is driven by the benchmark over stdin/stdout, one JSON object a line. It answers ``{"event": "ready"}`` once
started, then, for each command:

* ``{"cmd": "connect"}``: open the N readers (a bounded number of handshakes in flight) and answer ``connected``
  with how many opened, how many failed and when the first started and the last completed (``time.time()``).
* ``{"cmd": "drain", "phase": P, "messages": M, "timeout": S}``: wait until every open reader has the M messages
  of phase P, or S seconds, then answer ``drained`` with what arrived: every delivery's latency (µs), each
  message's reader count and last arrival, duplicates, bytes.
* ``{"cmd": "quit"}``: close and exit.

Readers are plain ``asyncio.Protocol``s, with no task per reader: the WebSocket ones drive the ``websockets``
library's sans-I/O client (handshake, frame parsing, answering pings); the SSE ones speak HTTP/1.1 (chunked or not)
and the event-stream format directly. Each message carries ``FANOUT <phase> <seq> <send time> |`` in its text (the
headline of a ticker flash, the whole body for the peers); a reader notes, per message, the arrival time of the
socket read that brought it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

MARK = "FANOUT"
HANDSHAKE_TIMEOUT = 20.0
CONNECT_ATTEMPTS = 3


def marker(phase: int, seq: int, sent: float) -> str:
    """The text every published message starts with; the rest is padding."""
    return f"{MARK} {phase} {seq} {sent:.6f} |"


def parse_marker(text: str) -> tuple[int, int, float] | None:
    parts = text.split(" ", 4)
    if len(parts) < 4 or parts[0] != MARK:
        return None
    return int(parts[1]), int(parts[2]), float(parts[3])


def ticker_ws_text(data: bytes) -> str:
    """A ticker ``/v1/stream`` message: ``{"type", "event_id", "flash"}``; the headline carries the marker."""
    event = orjson.loads(data)
    return str(event["flash"]["headlines"][0]["value"]) if event.get("type") == "flash" else ""


def ticker_sse_text(data: bytes) -> str:
    """A ticker ``/v1/events`` ``data:`` field: the flash itself."""
    return str(orjson.loads(data)["headlines"][0]["value"])


def raw_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class Tally:
    """What the readers of this process received, per phase."""

    def __init__(self) -> None:
        self.latencies_us: dict[int, list[int]] = {}
        self.count: Counter[tuple[int, int]] = Counter()  # (phase, seq) -> readers that got it
        self.last: dict[tuple[int, int], float] = {}  # (phase, seq) -> latest arrival
        self.duplicates: Counter[int] = Counter()
        self.bytes: Counter[int] = Counter()
        self.foreign = 0  # messages without a marker (ticker's own events, other publishers)

    def record(self, seen: set[tuple[int, int]], text: str, size: int, now: float) -> None:
        mark = parse_marker(text)
        if mark is None:
            self.foreign += 1
            return
        phase, seq, sent = mark
        key = (phase, seq)
        if key in seen:
            self.duplicates[phase] += 1
            return
        seen.add(key)
        self.count[key] += 1
        if now > self.last.get(key, 0.0):
            self.last[key] = now
        self.latencies_us.setdefault(phase, []).append(round((now - sent) * 1e6))
        self.bytes[phase] += size

    def received(self, phase: int) -> int:
        return len(self.latencies_us.get(phase, ()))

    def report(self, phase: int) -> dict[str, object]:
        keys = sorted(key for key in self.count if key[0] == phase)
        return {
            "event": "drained",
            "phase": phase,
            "received": self.received(phase),
            "duplicates": self.duplicates[phase],
            "bytes": self.bytes[phase],
            "latencies_us": self.latencies_us.get(phase, []),
            "messages": {str(seq): [self.count[(p, seq)], self.last[(p, seq)]] for p, seq in keys},
            "foreign": self.foreign,
        }


class Reader(asyncio.Protocol):
    """What both kinds of reader share: the handshake future, the tally, the messages seen (for duplicates)."""

    def __init__(self, tally: Tally, extract: Callable[[bytes], str]) -> None:
        self.tally = tally
        self.extract = extract
        self.seen: set[tuple[int, int]] = set()
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def deliver(self, data: bytes, now: float) -> None:
        self.tally.record(self.seen, self.extract(data), len(data), now)

    def fail(self, problem: str) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(problem))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(f"connection lost during the handshake: {exc}")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class WsReader(Reader):
    def __init__(self, url: str, tally: Tally, extract: Callable[[bytes], str]) -> None:
        super().__init__(tally, extract)
        self.conn = ClientProtocol(parse_uri(url), max_size=None)
        self.fragments: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.send_request(self.conn.connect())
        self.flush()

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.conn.receive_data(data)
        for event in self.conn.events_received():
            if isinstance(event, Frame):
                self.frame(event, now)
            elif isinstance(event, Response):
                if self.conn.handshake_exc is not None:
                    self.fail(f"handshake failed: {self.conn.handshake_exc}")
                elif not self.opened.done():
                    self.opened.set_result(None)
        self.flush()

    def frame(self, frame: Frame, now: float) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            if not frame.fin:
                self.fragments.append(bytes(frame.data))
                return
            data = b"".join([*self.fragments, frame.data]) if self.fragments else bytes(frame.data)
            self.fragments.clear()
            self.deliver(data, now)

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self.flush()
        return None

    def flush(self) -> None:
        assert self.transport is not None
        for chunk in self.conn.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.close()
                return


class SseReader(Reader):
    """``GET`` an event stream over HTTP/1.1 and hand each event's ``data`` to the tally."""

    def __init__(self, url: str, tally: Tally, extract: Callable[[bytes], str]) -> None:
        super().__init__(tally, extract)
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
        if not self.opened.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, data = self.head[:end].decode("latin-1"), self.head[end + 4 :]
            status, *fields = head.split("\r\n")
            if status.split(" ", 2)[1:2] != ["200"]:
                self.fail(f"answered {status!r}")
                return
            headers = {
                name.strip().lower(): value.strip().lower()
                for name, _, value in (field.partition(":") for field in fields)
            }
            self.chunked = "chunked" in headers.get("transfer-encoding", "")
            self.opened.set_result(None)
        if self.chunked:
            data = self.dechunk(data)
        self.events(data, now)

    def dechunk(self, data: bytes) -> bytes:
        raw = self.raw + data if self.raw else data
        out = []
        pos = 0
        while (line_end := raw.find(b"\r\n", pos)) >= 0:
            size = int(raw[pos:line_end].split(b";", 1)[0], 16)
            start = line_end + 2
            if len(raw) < start + size + 2:
                break
            out.append(raw[start : start + size])
            pos = start + size + 2
        self.raw = raw[pos:]
        return b"".join(out)

    def events(self, data: bytes, now: float) -> None:
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        text = self.text + data if self.text else data
        pos = 0
        while (end := text.find(b"\n\n", pos)) >= 0:
            lines = [line[5:].removeprefix(b" ") for line in text[pos:end].split(b"\n") if line.startswith(b"data:")]
            if lines:
                self.deliver(b"\n".join(lines), now)
            pos = end + 2
        self.text = text[pos:]


EXTRACT = {
    ("ticker", "ws"): ticker_ws_text,
    ("ticker", "sse"): ticker_sse_text,
    ("raw", "ws"): raw_text,
    ("raw", "sse"): raw_text,
}


class Readers:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tally = Tally()
        self.readers: list[WsReader | SseReader] = []
        self.failures: Counter[str] = Counter()

    async def open_one(self, gate: asyncio.Semaphore) -> None:
        args = self.args
        parts = urlsplit(args.url)
        extract = EXTRACT[(args.format, args.transport)]
        loop = asyncio.get_running_loop()
        local_addr = (args.source, 0) if args.source else None
        async with gate:
            for attempt in range(CONNECT_ATTEMPTS):
                reader: WsReader | SseReader = (
                    WsReader(args.url, self.tally, extract)
                    if args.transport == "ws"
                    else SseReader(args.url, self.tally, extract)
                )
                try:
                    await asyncio.wait_for(
                        loop.create_connection(
                            functools.partial(_same, reader), parts.hostname, parts.port, local_addr=local_addr
                        ),
                        HANDSHAKE_TIMEOUT,
                    )
                    await asyncio.wait_for(reader.opened, HANDSHAKE_TIMEOUT)
                except (OSError, TimeoutError) as exc:
                    reader.close()
                    if attempt == CONNECT_ATTEMPTS - 1:
                        self.failures[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    else:
                        await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                self.readers.append(reader)
                return

    async def connect(self) -> dict[str, object]:
        gate = asyncio.Semaphore(self.args.concurrency)
        started = time.time()
        await asyncio.gather(*(self.open_one(gate) for _ in range(self.args.readers)))
        return {
            "event": "connected",
            "opened": len(self.readers),
            "failed": sum(self.failures.values()),
            "failures": dict(self.failures.most_common(3)),
            "started": started,
            "done": time.time(),
        }

    async def drain(self, phase: int, messages: int, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = sum(1 for reader in self.readers if not reader.closed)
            if self.tally.received(phase) >= live * messages:
                break
            await asyncio.sleep(0.005)
        report = self.tally.report(phase)
        report["closed"] = sum(1 for reader in self.readers if reader.closed)
        return report

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def _same(reader: Reader) -> Reader:
    return reader


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    readers = Readers(args)
    say({"event": "ready"})
    try:
        while line := await commands.readline():
            command = json.loads(line)
            if command["cmd"] == "connect":
                say(await readers.connect())
            elif command["cmd"] == "drain":
                say(await readers.drain(command["phase"], command["messages"], command["timeout"]))
            elif command["cmd"] == "quit":
                break
    finally:
        readers.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_readers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://… for WebSocket readers, http://… for SSE readers")
    parser.add_argument("--transport", choices=["ws", "sse"], required=True)
    parser.add_argument("--readers", type=int, required=True)
    parser.add_argument(
        "--format",
        choices=["ticker", "raw"],
        required=True,
        help="ticker: JSON events whose headline has the marker; raw: the message is the payload",
    )
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight (default: %(default)s)")
    parser.add_argument(
        "--source",
        help="local address to connect from, e.g. 127.0.0.3: each loopback source address has its own ~28,000 "
        "ephemeral ports, so several client processes can hold more connections to one server port than one can",
    )
    args = parser.parse_args(argv)
    raise_open_files_limit()
    try:
        import uvloop
    except ImportError:
        runner: Callable[..., object] = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
