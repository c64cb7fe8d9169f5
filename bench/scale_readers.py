"""One client process of the scale benchmark: up to ~20,000 WebSocket readers, each timed by the kernel.

    python -m bench.scale_readers --url ws://… --readers N --source 127.0.0.2 [--connect-rate 500] [--nice 0]

It speaks the same line-by-line JSON as ``bench.fanout_readers`` (``connect``, ``drain``, ``quit``; the same
``connected`` and ``drained`` answers), with the same frame parsing and tally (``bench/fanout_wire.py``), but is
built for 100,000 readers on the two cores that also run the hubs:

* No asyncio transport per reader: each is a non-blocking socket in one ``epoll`` set, read with ``recvmsg`` in
  one call and handed to ``WsReader.received``; pings, closes and the handshake go through a minimal stand-in
  transport. The set is polled every ``--tick`` seconds (10 ms), not on every wake-up: a flash then finds
  hundreds of sockets ready per poll instead of waking the process for a few, which halves the readers' CPU per
  delivery.
* Arrival times are the kernel's (``SO_TIMESTAMPNS``: when the segment reached the reader's socket, which on
  loopback is when the hub wrote it), not when this process got round to reading. So the readers can poll in
  ticks and run at a lower priority (``--nice``), leaving the CPU to the hubs, without making the fan-out look
  slower than it is. A read that brings several messages (a burst, or readers that fell a flash behind) gives all
  of them the time of its last segment: an upper bound.
* Connections open at ``--connect-rate`` a second (a few hundred handshakes in flight at most), from ``--source``
  with the local port chosen at connect time (``IP_BIND_ADDRESS_NO_PORT``), so the hub's new-connection limits are
  met as a deployment sets them; a refusal (503/429) is retried after a pause, as clients do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import select
import socket
import struct
import sys
import time
from urllib.parse import urlsplit

from .fanout_readers import Readers, run_reader_process, serve
from .fanout_wire import WsReader

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
TIMESPEC = struct.Struct("qq")
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESPEC.size)
READ_BYTES = 32 * 1024  # a burst of 20 flashes is ~15 KB
HANDSHAKE_TIMEOUT = 30.0
# A full hub process answers 503 at once and is back in accept() first, so the shared socket keeps handing it new
# connections: like the clients, which retry for as long as they live, a reader tries many times.
ATTEMPTS = 20
BACKOFF_CAP = 5.0  # seconds, at most, between two tries
IN_FLIGHT = 300  # handshakes at once, per process


class SocketTransport:
    """What a ``WsReader`` writes to and closes, over a bare non-blocking socket watched by the loop."""

    __slots__ = ("closing", "poller", "reader", "sock")

    def __init__(self, poller: Poller, sock: socket.socket, reader: WsReader) -> None:
        self.poller = poller
        self.sock = sock
        self.reader = reader
        self.closing = False

    def write(self, data: bytes) -> None:
        """The handshake request, a pong or a close: a few hundred bytes into an empty send buffer."""
        try:
            self.sock.send(data)
        except OSError:
            self.close()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.poller.remove(self.sock.fileno())
        self.sock.close()
        self.reader.connection_lost(None)

    abort = close

    def readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_BYTES, ANCILLARY_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        if ancillary:
            seconds, nanoseconds = TIMESPEC.unpack_from(ancillary[0][2])
            now = seconds + nanoseconds * 1e-9
        else:  # the first segments after timestamping is switched on may come without
            now = time.time()
        self.reader.received(data, now)


class Poller:
    """One ``epoll`` set for every reader socket of the process, polled in ticks by one task."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self.epoll = select.epoll()
        self.sockets: dict[int, SocketTransport] = {}

    def add(self, transport: SocketTransport) -> None:
        fd = transport.sock.fileno()
        self.sockets[fd] = transport
        self.epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        if self.sockets.pop(fd, None) is not None:
            self.epoll.unregister(fd)

    async def run(self) -> None:
        sockets = self.sockets
        while True:
            ready = self.epoll.poll(0, max(len(sockets), 1))
            for fd, _ in ready:
                transport = sockets.get(fd)
                if transport is not None:
                    transport.readable()
            await asyncio.sleep(self.tick)


class ScaleReaders(Readers):
    """``bench.fanout_readers``' command loop and drain, with the lean sockets above and a paced connect."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        parts = urlsplit(args.url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.poller = Poller(args.tick)
        self.polling = asyncio.get_running_loop().create_task(self.poller.run())

    async def open_one(self, gate: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        async with gate:
            for attempt in range(ATTEMPTS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                reader = WsReader(self.args.url, self.tally)
                transport = SocketTransport(self.poller, sock, reader)
                try:
                    if self.args.source:
                        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                        sock.bind((self.args.source, 0))
                    await asyncio.wait_for(loop.sock_connect(sock, self.address), HANDSHAKE_TIMEOUT)
                    self.poller.add(transport)
                    reader.connection_made(transport)  # type: ignore[arg-type]
                    await asyncio.wait_for(reader.opened, HANDSHAKE_TIMEOUT)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    transport.close()
                    if attempt == ATTEMPTS - 1:
                        self.failures[f"{type(exc).__name__}: {exc}"[:200]] += 1
                    else:  # refused (503: the hub's pace or limit): back off as a client does
                        await asyncio.sleep(random.uniform(0.5, 1.5) * min(attempt + 1, BACKOFF_CAP))
                    continue
                self.readers.append(reader)
                return

    async def connect(self) -> dict[str, object]:
        """Start one connection every 1/``--connect-rate`` s (in steps of ≥ 10 ms), at most ``IN_FLIGHT`` open."""
        gate = asyncio.Semaphore(IN_FLIGHT)
        rate = self.args.connect_rate
        started, start = time.time(), time.monotonic()
        tasks = []
        for k in range(self.args.readers):
            wait = start + k / rate - time.monotonic()
            if wait > 0.01:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self.open_one(gate)))
        await asyncio.gather(*tasks)
        return self.connected(started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_readers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://…/v1/stream?…")
    parser.add_argument("--readers", type=int, required=True)
    parser.add_argument("--source", help="local address to connect from (its own ~28,000 ephemeral ports)")
    parser.add_argument("--connect-rate", type=float, default=500.0, help="new connections a second")
    parser.add_argument("--tick", type=float, default=0.01, help="seconds between polls of the sockets")
    parser.add_argument("--nice", type=int, default=0, help="lower this process's priority by this much")
    args = parser.parse_args(argv)
    args.transport = "ws"
    if args.nice:
        os.nice(args.nice)
    return run_reader_process(serve(args, ScaleReaders))


if __name__ == "__main__":
    sys.exit(main())
