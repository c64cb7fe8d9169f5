"""One client process of the fan-out benchmark: many WebSocket or SSE readers on one asyncio loop.

    python -m bench.fanout_readers --url URL --transport ws|sse --readers N

It is driven by the benchmark over stdin/stdout, one JSON object a line. It answers ``{"event": "ready"}`` once
started, then, for each command:

* ``{"cmd": "connect"}``: open the N readers (a bounded number of handshakes in flight) and answer ``connected``
  with how many opened, how many failed and when the first started and the last completed (``time.time()``).
* ``{"cmd": "drain", "phase": P, "messages": M, "timeout": S}``: wait until every open reader has the M messages
  of phase P, or S seconds, then answer ``drained`` with what arrived: every delivery's latency (µs), each
  message's reader count and last arrival, duplicates, bytes.
* ``{"cmd": "quit"}``: close and exit.

The client must not be the bottleneck, so a delivery costs as little as it can, and the same for every target:

* Readers are plain ``asyncio.Protocol``s (``bench/fanout_wire.py``), with no task per reader.
* WebSocket readers let the ``websockets`` library's sans-I/O client write the upgrade request and check the
  ``101`` answer, then parse the server's frames themselves (RFC 6455 §5): unmasked frames, 7-, 16- or 64-bit
  lengths, fragmented messages, frames split over socket reads. They answer a ping with a masked pong and a close
  with a masked close (then close the socket). Text frames are not checked to be UTF-8.
* SSE readers speak HTTP/1.1 (chunked or not) and the event-stream format directly, and look only for the event's
  ``data:`` lines.
* Each message carries ``FANOUT <phase> <seq> <send time> |`` in its text (in a ticker flash it is inside the
  headline of the JSON; for the peers it starts the body). Readers do not parse the message: they find the marker's
  bytes and look them up in one dict per process, so the thousands of readers of a process parse each marker
  once. A reader notes, per message, the arrival time of the socket read that brought it.

A protocol violation (a masked or malformed frame, a bad chunk) is written to stderr and closes that reader: the
benchmark then reports it as closed and its messages as lost.
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
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from .fanout_wire import Reader, SseReader, Tally, WsReader

HANDSHAKE_TIMEOUT = 20.0
CONNECT_ATTEMPTS = 3


class Readers:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tally = Tally()
        self.readers: list[WsReader | SseReader] = []
        self.failures: Counter[str] = Counter()

    async def open_one(self, gate: asyncio.Semaphore) -> None:
        args = self.args
        parts = urlsplit(args.url)
        loop = asyncio.get_running_loop()
        local_addr = (args.source, 0) if args.source else None
        async with gate:
            for attempt in range(CONNECT_ATTEMPTS):
                reader: WsReader | SseReader = (
                    WsReader(args.url, self.tally) if args.transport == "ws" else SseReader(args.url, self.tally)
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
        return self.connected(started)

    def connected(self, started: float) -> dict[str, object]:
        """The report once every reader has opened or failed, connecting since ``started`` (epoch seconds)."""
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
            if self.tally.received(phase) >= (len(self.readers) - self.tally.closed) * messages:
                break
            await asyncio.sleep(0.005)
        report = self.tally.report(phase)
        report["closed"] = self.tally.closed
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


def run_reader_process(main: Coroutine[Any, Any, None]) -> int:
    """Run a reader process's command loop: on uvloop where it is installed (the clients must not be what limits a
    benchmark), with the open-files limit raised, until the bench closes its stdin (or ^C)."""
    raise_open_files_limit()
    try:
        import uvloop
    except ImportError:
        runner: Callable[..., object] = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(main)
    return 0


def say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def serve(args: argparse.Namespace, kind: type[Readers] = Readers) -> None:
    """Answer the bench's commands on stdin with ``kind``'s readers (``bench.scale_readers`` has its own)."""
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    readers = kind(args)
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
        if readers.tally.violations:
            print(f"fanout_readers: {readers.tally.violations} protocol violations", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout_readers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://… for WebSocket readers, http://… for SSE readers")
    parser.add_argument("--transport", choices=["ws", "sse"], required=True)
    parser.add_argument("--readers", type=int, required=True)
    parser.add_argument(
        "--format",
        choices=["ticker", "raw"],
        help="ignored (kept for old command lines): the marker is found in every target's messages alike",
    )
    parser.add_argument("--concurrency", type=int, default=100, help="handshakes in flight (default: %(default)s)")
    parser.add_argument(
        "--source",
        help="local address to connect from, e.g. 127.0.0.3: each loopback source address has its own ~28,000 "
        "ephemeral ports, so several client processes can hold more connections to one server port than one can",
    )
    args = parser.parse_args(argv)
    return run_reader_process(serve(args))


if __name__ == "__main__":
    sys.exit(main())
