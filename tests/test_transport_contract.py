"""One contract for both ways of serving readers: the native protocols (``ticker run``: ``serve.py`` gives uvicorn
the front protocol) and the portable ASGI endpoints (the app under plain uvicorn). Each test runs against both, on
loopback, with real clients, and asserts the same observable behaviour."""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import time
from typing import Any

import httpx
import jwt
import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode

from .support.flashes import publish
from .support.processes import TIMEOUT, Service, ServiceFactory
from .support.readers import next_ws_event, sse_reader, ws_reader

WS_MAX = 64 * 1024  # TICKER_WS_MAX_MESSAGE_BYTES's default, given to plain uvicorn too
JWT_SECRET = "contract-suite-hmac-secret-" + "x" * 40
ISSUER = "https://auth.example"
PRIVATE = "health"
READER_JWT = {
    "TICKER_PRIVATE_TOPICS": PRIVATE,
    "TICKER_JWT_ALGORITHM": "HS256",
    "TICKER_JWT_KEY": JWT_SECRET,
    "TICKER_JWT_ISSUER": ISSUER,
}
FOREIGN = "https://evil.example"


# The two ways of serving readers: ``ticker run`` (the native protocols) and the app under plain uvicorn (ASGI).
MODES = {"native": "embedded", "asgi": "asgi"}
UVICORN_ARGS = ("--ws-max-size", str(WS_MAX), "--ws-per-message-deflate", "false")


def start(service_factory: ServiceFactory, kind: str, **env: str) -> Service:
    """``kind`` served embedded, with an editor token; uvicorn gets the limits ``ticker run`` sets itself."""
    return service_factory(MODES[kind], args=UVICORN_ARGS if kind == "asgi" else (), name=f"contract-{kind}", **env)


@pytest.fixture(scope="module", params=list(MODES))
def served(request: pytest.FixtureRequest, service_factory: ServiceFactory) -> Service:
    return start(service_factory, request.param, **READER_JWT)


def reader_token(expires_in: float) -> str:
    claims = {"iss": ISSUER, "aud": "ticker", "exp": int(time.time() + expires_in), "topics": [PRIVATE]}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def refused_opening(service: Service, query: str = "", **connect: Any) -> tuple[int, dict[str, Any]]:
    """Open /v1/stream expecting a refusal: the HTTP status and the problem document."""
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{service.ws_url}/v1/stream?{query}", open_timeout=TIMEOUT, **connect):
            pass
    response = refused.value.response
    assert response.headers["content-type"] == "application/problem+json", response.headers
    return response.status_code, json.loads(response.body)


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


# -- readers get flashes, refusals are problem documents, resume, close -----------------------------------------
async def test_a_flash_reaches_websocket_and_sse_readers(served: Service, client: httpx.AsyncClient) -> None:
    async with ws_reader(served, "lang=de") as ws, sse_reader(served, "lang=de") as sse:
        doc = await publish(client, served, "contract: both transports", language="de")
        assert (await next_ws_event(ws))["flash"]["uri"] == doc["uri"]
        assert (await sse.next_event())["flash"]["uri"] == doc["uri"]


async def test_a_bad_filter_is_a_400_problem(served: Service, client: httpx.AsyncClient) -> None:
    status, problem = await refused_opening(served, "max_urgency=12")
    assert status == problem["status"] == 400
    assert [e["field"] for e in problem["errors"]] == ["max_urgency"]
    response = await client.get(f"{served.base_url}/v1/events?max_urgency=12")
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == problem["errors"]


async def test_a_bad_reader_token_is_a_401_problem(served: Service, client: httpx.AsyncClient) -> None:
    bad = {"Authorization": "Bearer not.a.jwt"}
    status, problem = await refused_opening(served, additional_headers=bad)
    assert status == problem["status"] == 401 and problem["detail"].startswith("reader token refused")
    response = await client.get(f"{served.base_url}/v1/events", headers=bad)
    assert response.status_code == 401 and response.json()["detail"] == problem["detail"]


async def test_a_foreign_origin_is_a_403_problem(served: Service) -> None:
    status, problem = await refused_opening(served, origin=FOREIGN)
    assert status == problem["status"] == 403 and problem["detail"] == "This Origin may not open the stream."


async def test_readers_resume_after_their_last_event_id(served: Service, client: httpx.AsyncClient) -> None:
    last = (await client.get(f"{served.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
    docs = [await publish(client, served, f"contract: resume {i}", language="fr") for i in range(3)]
    async with ws_reader(served, f"lang=fr&last_event_id={last}") as ws:
        assert [(await next_ws_event(ws))["flash"]["uri"] for _ in docs] == [d["uri"] for d in docs]
    async with sse_reader(served, "lang=fr", headers={"Last-Event-ID": last}) as sse:
        assert [(await sse.next_event())["flash"]["uri"] for _ in docs] == [d["uri"] for d in docs]


async def test_an_expired_reader_token_closes_4401_with_a_retry_hint(served: Service) -> None:
    headers = {"Authorization": f"Bearer {reader_token(expires_in=1.5)}"}
    async with websockets.connect(f"{served.ws_url}/v1/stream", additional_headers=headers) as ws:
        code, reason = await closed_with(ws)
    assert code == 4401 and "retry=" in reason, reason


@pytest.mark.parametrize("kind", list(MODES))
async def test_shutdown_closes_websockets_1012(kind: str, service_factory: ServiceFactory) -> None:
    """SIGTERM: WebSocket readers are told the service restarts (1012), and the process exits."""
    service = start(service_factory, kind)
    try:
        process = service.processes[0].proc
        assert process is not None
        async with ws_reader(service, "lang=en") as ws:
            process.send_signal(signal.SIGTERM)
            code, reason = await closed_with(ws)
        assert code == 1012
        if kind == "native":
            assert "retry=" in reason  # under plain uvicorn, the server closes the stream itself, with no reason
        assert await asyncio.to_thread(process.wait, TIMEOUT) in (0, -signal.SIGTERM)
    finally:
        service.stop()
