"""One contract for both ways of serving readers: the native protocols (``ticker run``: ``serve.py`` gives uvicorn
the front protocol) and the portable ASGI endpoints (the app under plain uvicorn). Each test runs against both, on
loopback, with real clients, and asserts the same observable behaviour."""

from __future__ import annotations

import asyncio
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.frames import Frame, Opcode

from .support import (
    TIMEOUT,
    Process,
    Service,
    base_env,
    free_port,
    next_ws_event,
    publish,
    run_ticker,
    ticker,
    wait_ready,
    ws_reader,
)

WS_MAX = 64 * 1024  # TICKER_WS_MAX_MESSAGE_BYTES's default, given to plain uvicorn too


def start(kind: str, tmp: Path, **extra_env: str) -> Service:
    """``ticker run`` (native) or the app under plain uvicorn (asgi), embedded, with an editor token."""
    env = base_env(TICKER_DATA_DIR=str(tmp / "data"), **extra_env)
    created = run_ticker(env, "token", "create", "--name", "tests")
    assert created.returncode == 0, created.stderr
    port = free_port()
    if kind == "native":
        args = ticker("run", "--port", str(port))
    else:
        args = [sys.executable, "-m", "uvicorn", "--factory", "ticker_service.app:create_app", "--port", str(port)]
        args += ["--ws", "websockets-sansio", "--ws-max-size", str(WS_MAX), "--ws-per-message-deflate", "false"]
        args += ["--log-level", "warning"]
    server = Process(args, env, tmp / f"{kind}.log")
    service = Service(kind, f"http://127.0.0.1:{port}", created.stdout.strip().splitlines()[-1], env, [server])
    server.start()
    try:
        wait_ready(service.base_url, server)
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture(scope="module", params=["native", "asgi"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start(request.param, Path(tmp_path_factory.mktemp(f"contract-{request.param}")))
    yield service
    service.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


async def closed_with(ws: websockets.ClientConnection) -> tuple[int, str]:
    """Wait for the server's close frame: its code and reason."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None, "no close frame from the server"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def raw_close_code(service: Service, frame: bytes) -> int:
    """Open /v1/stream by hand, send ``frame`` (which no well-behaved client library would send), and return the
    code of the server's close frame."""
    port = int(service.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /v1/stream?lang=ja HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        writer.write(frame)
        received = b""
        while True:
            chunk = await asyncio.wait_for(reader.read(4096), TIMEOUT)
            assert chunk, f"connection ended without a close frame: {received!r}"
            received += chunk
            if received[:1] == b"\x88" and len(received) >= 4:
                return int(struct.unpack("!H", received[2:4])[0])
    finally:
        writer.close()


# -- RFC 6455 corners ------------------------------------------------------------------------------------------
async def test_a_fragmented_subscribe_message_is_accepted(served: Service, client: httpx.AsyncClient) -> None:
    """§5.4: a text message may come in several frames; the hub joins them."""
    async with ws_reader(served, "lang=en") as ws:
        await ws.send(['{"type": "subscribe", ', '"lang": "es", ', '"category": "sports"}'])
        # The message and the publishes travel on different connections: probe until the filter is in place.
        for _ in range(20):
            probe = await publish(client, served, "fragmented: probe", language="es", category="sports")
            try:
                if (await next_ws_event(ws, timeout=0.5))["flash"]["uri"] == probe["uri"]:
                    break
            except TimeoutError:
                continue
        else:
            pytest.fail("the fragmented subscribe message never took effect")
        await publish(client, served, "fragmented: old filter", language="en")
        wanted = await publish(client, served, "fragmented: new filter", language="es", category="sports")
        assert (await next_ws_event(ws))["flash"]["uri"] == wanted["uri"]


async def test_invalid_utf8_text_closes_1007(served: Service) -> None:
    async with ws_reader(served, "lang=ja") as ws:
        await ws.send(b'{"type": "subscribe", "lang": "\xff"}', text=True)
        assert (await closed_with(ws))[0] == 1007


async def test_a_fragmented_message_over_the_limit_closes_1009(served: Service) -> None:
    async with ws_reader(served, "lang=ja") as ws:
        await ws.send(["x" * (WS_MAX // 2 + 1), "x" * (WS_MAX // 2 + 1)])
        assert (await closed_with(ws))[0] == 1009


async def test_a_stray_continuation_frame_closes_1002(served: Service) -> None:
    frame = Frame(Opcode.CONT, b"orphan").serialize(mask=True, extensions=[])
    assert await raw_close_code(served, frame) == 1002
