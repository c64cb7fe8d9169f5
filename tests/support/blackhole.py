"""A TCP proxy to Redis that a test can cut silently: a network partition, not a crash.

A crash or a restart closes connections (FIN or RST), and redis-py notices at once. A partition says nothing: the
packets are lost, both ends keep their connections open and wait. :class:`BlackHole` forwards bytes between a
``ticker`` process and Redis until :meth:`BlackHole.partition`; from then on nothing passes in either direction
and nothing is closed. ``mode="stall"`` holds what was sent and delivers it once healed, as TCP's retransmission
would after a short partition; ``mode="drop"`` loses it, as a middlebox that has forgotten the flow would.
Connections made during a partition are accepted, then wait (their bytes unread) until it heals.

The proxy runs its own event loop in a thread, so that a test's blocking waits do not stop its traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, Literal

CHUNK = 65536


class BlackHole:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.mode: Literal["stall", "drop"] = "stall"
        self.dropped_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blackhole", daemon=True)
        self._healthy = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``REDIS_URL`` for a process that should reach Redis through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> BlackHole:
        self._thread.start()

        async def serve() -> None:
            self._healthy.set()
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

        self._run(serve())
        return self

    def partition(self, mode: Literal["stall", "drop"] = "stall") -> None:
        """From now on nothing passes, either way, on any connection; nothing is closed either."""

        async def cut() -> None:
            self.mode = mode
            self._healthy.clear()

        self._run(cut())

    def heal(self) -> None:
        async def mend() -> None:
            self._healthy.set()

        self._run(mend())

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BlackHole:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        try:
            await self._healthy.wait()  # a connection made during a partition waits, unread
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return  # Redis is down: the client sees its connection closed, as it would without the proxy
            self._writers.add(upstream_writer)
            try:
                await asyncio.gather(
                    self._pump(client_reader, upstream_writer), self._pump(upstream_reader, client_writer)
                )
            finally:
                self._writers.discard(upstream_writer)
                upstream_writer.close()
        finally:
            self._writers.discard(client_writer)
            client_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; during a partition hold (or drop) what comes, and pass on no close until healed."""
        try:
            while True:
                data = await reader.read(CHUNK)
                if not self._healthy.is_set():
                    if data and self.mode == "drop":
                        self.dropped_bytes += len(data)
                        continue
                    await self._healthy.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()
