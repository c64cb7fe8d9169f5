"""Real readers: WebSocket and SSE clients of a running hub, a strict parser of the event-stream format, and a
reader that completes the handshake and then stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from .processes import TIMEOUT, Service


async def _from_now(service: Service, query: str) -> str:
    """Resume from the current last event id, so an earlier test's fan-out still in flight cannot arrive here.

    (A live-only reader gets whatever is published after it connects, including an event recorded a moment
    before; tests that check a specific sequence start from a known point instead.)
    """
    if "last_event_id=" in query:
        return query
    async with httpx.AsyncClient() as client:
        last = (await client.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
    return f"{query}&last_event_id={last}" if query else f"last_event_id={last}"


@contextlib.asynccontextmanager
async def ws_reader(service: Service, query: str = "", *, from_now: bool = True) -> AsyncIterator[ClientConnection]:
    if from_now:
        query = await _from_now(service, query)
    async with websockets.connect(f"{service.ws_url}/v1/stream?{query}", open_timeout=TIMEOUT) as ws:
        yield ws


async def next_ws_event(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


class SSEReader:
    """Reads a text/event-stream with a real HTTP client and parses it per the WHATWG rules we use."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._lines = response.aiter_lines()

    async def next_event(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        async for line in self._lines:
            if line == "":
                if "data" in event:
                    event["flash"] = json.loads(event["data"])
                    return event
                event = {}
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
        raise EOFError("stream ended")


@contextlib.asynccontextmanager
async def sse_reader(
    service: Service, query: str = "", headers: dict[str, str] | None = None, *, from_now: bool = True
) -> AsyncIterator[SSEReader]:
    if from_now and not (headers and "Last-Event-ID" in headers):
        query = await _from_now(service, query)
    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as client:
        async with client.stream("GET", f"{service.base_url}/v1/events?{query}", headers=headers or {}) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SSEReader(response)
            yield reader


async def wait_readers(service: Service, count: int) -> None:
    """Wait until the hub reports ``count`` connected readers (they are attached before events flow)."""
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            body = (await client.get(f"{service.base_url}/readyz")).json()
            if body.get("readers") == count:
                return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"hub never had {count} readers")


async def stalled_reader(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket reader that completes the handshake, then never reads again (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    writer.write(
        b"GET /v1/stream?lang=en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 101")
    writer.transport.pause_reading()
    return reader, writer


def parse_sse(data: bytes) -> list[dict[str, str]]:
    """A strict reading of the WHATWG event-stream format: lines end at CR, LF or CRLF."""
    events, current = [], {}
    text = data.decode()
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            current[name] = current[name] + "\n" + value if name == "data" and name in current else value
    return events
