"""One client process of the reconnect-storm benchmark: many WebSocket readers that resume by event id.

    python -m bench.storm_readers --url URL --readers N [--source 127.0.0.2] [--reconnect immediate|hint]

Driven over stdin/stdout, one JSON object a line, like ``bench.fanout_readers`` (whose WebSocket client it reuses).
Each reader keeps, across its connections, the flashes it got (the ``STORM <seq> |`` marker of their headline) and
the last ``event_id``. When its connection ends (a ``1012`` close from a stopping hub, or the socket lost) it
connects again with ``?last_event_id=<the last id>``:

* ``immediate``: at once; while the port refuses connections (the hub is not back yet), again after 200-400 ms;
* ``hint``: as the clients do: after the ``retry=<ms>`` hint of the close reason (1-5 s, jittered per reader by the
  hub), or a uniformly drawn 1-5 s if the connection just dropped; then the same retries while refused.

Commands: ``connect`` (open every reader; answers ``connected``), ``wait`` (``count``, ``timeout``: until every
reader has ``count`` flashes; answers ``waited`` with how many have), ``report`` (per reader: when it had
``count`` flashes again after its last reconnect, its reconnects and attempts, and what was missing, duplicated
or out of order), ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import re
import socket
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

from .fanout_readers import run_reader_process, say
from .fanout_wire import WsReader

MARK = b"STORM "
EVENT_ID = b'"event_id":"'
RETRY_HINT = re.compile(rb"retry=(\d+)")
REFUSED_RETRY = (0.2, 0.4)  # seconds between attempts while the port refuses connections
HANDSHAKE_TIMEOUT = 30.0
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux ≥ 4.2


class Subscriber:
    """One reader across its connections: what it received, and its reconnects."""

    __slots__ = (
        "attempts",
        "base",
        "caught_up",
        "closed",
        "closed_at",
        "dups",
        "last_id",
        "order_ok",
        "reconnects",
        "seqs",
    )

    def __init__(self, base: str) -> None:
        self.base = base
        self.seqs: set[int] = set()
        self.last_id: str | None = None
        self.dups = 0
        self.order_ok = True
        self.reconnects = 0
        self.attempts = 0
        self.closed_at: float | None = None
        self.closed = 0  # connections that ended after they opened (the WebSocket client counts them here)
        self.caught_up: dict[int, float] = {}  # flash count -> time.time() when this reader first had it

    def url(self) -> str:
        return self.base + (f"&last_event_id={self.last_id}" if self.last_id else "")

    def record(self, seen: object, data: bytes, start: int, stop: int, now: float) -> None:
        """A message (``data[start:stop]``): note its event id and its flash's sequence number."""
        at = data.find(EVENT_ID, start, stop)
        if at >= 0:
            at += len(EVENT_ID)
            self.last_id = data[at : data.find(b'"', at, stop)].decode()
        mark = data.find(MARK, start, stop)
        if mark < 0:
            return
        seq = int(data[mark + len(MARK) : data.find(b" ", mark + len(MARK), stop)])
        if seq in self.seqs:
            self.dups += 1
            return
        if self.seqs and seq < max(self.seqs):
            self.order_ok = False
        self.seqs.add(seq)
        self.caught_up.setdefault(len(self.seqs), now)

    def violation(self, problem: str) -> None:
        print(f"storm_readers: protocol violation: {problem}", file=sys.stderr, flush=True)


class StormReader(WsReader):
    """A ``WsReader`` whose deliveries go to its :class:`Subscriber`, and which remembers the close reason."""

    def __init__(self, subscriber: Subscriber) -> None:
        super().__init__(subscriber.url(), subscriber)  # type: ignore[arg-type]  # record() is all it uses
        self.close_reason = b""
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.ended.done():
            self.ended.set_result(None)

    def rare_frame(self, first: int, payload: bytes, now: float) -> bool:
        if first & 0x0F == 8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_reason = b"%d %s" % (code, payload[2:])
        return super().rare_frame(first, payload, now)


class Storm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.subscribers = [Subscriber(args.url) for _ in range(args.readers)]
        self.tasks: set[asyncio.Task[None]] = set()
        self.failed = 0
        self.attempt_failures: Counter[str] = Counter()  # how attempts failed: refused, timed out, reset, …
        self.endings: Counter[str] = Counter()  # why connections ended: the close frame's code and reason, or "dropped"
        self.quitting = False

    async def connected_socket(self) -> socket.socket:
        """A TCP connection to the hub from ``--source``. The local port is chosen at connect time, for this
        destination (``IP_BIND_ADDRESS_NO_PORT``): a port picked at bind time may be one whose previous connection
        the hub still holds in TIME_WAIT (it closed first, after ``1012``), and the hub's kernel then answers the SYN
        with an ACK instead of a SYN-ACK, so the connection waits for SYN retransmissions (1, 3, 7 s)."""
        parts = urlsplit(self.args.url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if self.args.source:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.args.source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def open(self, sub: Subscriber, *, first: bool) -> StormReader | None:
        """Connect until the hub answers (retrying while refused); ``None`` if it never does."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.args.give_up
        while time.monotonic() < deadline:
            sub.attempts += 1
            reader = StormReader(sub)
            try:
                await loop.create_connection(functools.partial(_same, reader), sock=await self.connected_socket())
                await asyncio.wait_for(reader.opened, HANDSHAKE_TIMEOUT)
            except (OSError, TimeoutError, ConnectionError) as exc:
                stage = "handshake" if reader.transport is not None else "connect"
                self.attempt_failures[f"{stage}: {type(exc).__name__} {exc}"[:80]] += 1
                reader.close()
                await asyncio.sleep(random.uniform(*REFUSED_RETRY) if not first else 0.1)
                continue
            task = loop.create_task(self.follow(sub, reader))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return reader
        self.failed += 1
        return None

    async def follow(self, sub: Subscriber, reader: StormReader) -> None:
        """Wait for the connection to end, then resume."""
        await reader.ended
        if self.quitting:
            return
        sub.closed_at = time.time()
        sub.reconnects += 1
        reason = reader.close_reason
        self.endings[reason.split(b"; retry=")[0].decode(errors="replace") if reason else "dropped"] += 1
        await asyncio.sleep(self.delay(reader.close_reason))
        await self.open(sub, first=False)

    def delay(self, reason: bytes) -> float:
        if self.args.reconnect == "immediate":
            return 0.0
        hint = RETRY_HINT.search(reason)
        return int(hint.group(1)) / 1000 if hint else random.uniform(1.0, 5.0)

    async def connect(self) -> dict[str, object]:
        gate = asyncio.Semaphore(self.args.concurrency)

        async def one(sub: Subscriber) -> None:
            async with gate:
                await self.open(sub, first=True)

        started = time.time()
        await asyncio.gather(*(one(sub) for sub in self.subscribers))
        return {"event": "connected", "failed": self.failed, "started": started, "done": time.time()}

    async def wait(self, count: int, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(len(sub.seqs) >= count for sub in self.subscribers):
                break
            await asyncio.sleep(0.02)
        return {"event": "waited", "have": sum(len(sub.seqs) >= count for sub in self.subscribers)}

    def report(self, count: int) -> dict[str, object]:
        expected = set(range(count))
        return {
            "event": "report",
            # when each reader had ``count`` flashes (None: never), and when its last connection ended
            "caught_up": [sub.caught_up.get(count) for sub in self.subscribers],
            "closed_at": [sub.closed_at for sub in self.subscribers],
            "reconnects": sum(sub.reconnects for sub in self.subscribers),
            "attempts": sum(sub.attempts for sub in self.subscribers),
            "missing": sum(len(expected - sub.seqs) for sub in self.subscribers),
            "extra": sum(len(sub.seqs - expected) for sub in self.subscribers),
            "duplicates": sum(sub.dups for sub in self.subscribers),
            "out_of_order": sum(not sub.order_ok for sub in self.subscribers),
            "failed": self.failed,
            "endings": dict(self.endings),
            "attempt_failures": dict(self.attempt_failures),
        }


def _same(reader: StormReader) -> StormReader:
    return reader


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    storm = Storm(args)
    say({"event": "ready"})
    while line := await commands.readline():
        command = json.loads(line)
        if command["cmd"] == "connect":
            say(await storm.connect())
        elif command["cmd"] == "wait":
            say(await storm.wait(command["count"], command["timeout"]))
        elif command["cmd"] == "report":
            say(storm.report(command["count"]))
        elif command["cmd"] == "quit":
            break
    storm.quitting = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm_readers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://…/v1/stream?… (the readers add last_event_id)")
    parser.add_argument("--readers", type=int, required=True)
    parser.add_argument("--source", help="local address to connect from (its own range of ephemeral ports)")
    parser.add_argument("--reconnect", choices=["immediate", "hint"], default="immediate")
    parser.add_argument("--concurrency", type=int, default=100, help="first connections in flight")
    parser.add_argument("--give-up", type=float, default=120.0, help="seconds a reader keeps trying to reconnect")
    args = parser.parse_args(argv)
    return run_reader_process(serve(args))


if __name__ == "__main__":
    sys.exit(main())
