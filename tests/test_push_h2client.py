"""The push sends' HTTP/2 client against a real TLS HTTP/2 server (hypercorn): many requests multiplexed on few
connections, bodies larger than the flow-control window, and the failures the push jobs tell apart."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from workers.push.h2client import Http2Client

from .support.fakes.server import TLSServer
from .support.processes import free_port

CONNECTIONS: set[tuple[str, int]] = set()  # client (address, port) pairs the server saw


async def echo(request: Request) -> Response:
    body = await request.body()
    client = request.scope.get("client")
    if client:
        CONNECTIONS.add(tuple(client))  # type: ignore[arg-type]
    if request.scope.get("http_version") != "2":
        return Response(status_code=505)
    return JSONResponse(
        {"length": len(body), "first": body[:1].decode(), "header": request.headers.get("x-n")},
        headers={"retry-after": "7"},
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    tls = TLSServer([Route("/echo", echo, methods=["POST"])], Path(tmp_path_factory.mktemp("h2"))).start()
    yield tls
    tls.stop()


def client_for(server: TLSServer, connections: int = 4) -> Http2Client:
    return Http2Client(ssl.create_default_context(cafile=str(server.ca_file)), 5.0, connections)


async def test_concurrent_requests_share_few_connections(server: TLSServer) -> None:
    """250 concurrent POSTs of 6,000 bytes (1.5 MB: far over the 64 KB initial windows) all arrive whole, each
    answer matched to its request, on at most the 4 connections allowed (hypercorn allows 100 streams each)."""
    CONNECTIONS.clear()
    client = client_for(server)
    try:
        bodies = [bytes([65 + i % 26]) * 6000 for i in range(250)]
        answers = await asyncio.gather(
            *(client.post(f"{server.url}/echo", body, {"x-n": str(i)}) for i, body in enumerate(bodies))
        )
    finally:
        await client.aclose()
    assert [a.status_code for a in answers] == [200] * 250
    assert [a.json() for a in answers] == [
        {"length": 6000, "first": chr(65 + i % 26), "header": str(i)} for i in range(250)
    ]
    assert answers[0].headers["retry-after"] == "7"
    assert 3 <= len(CONNECTIONS) <= 4


async def test_a_closed_port_is_a_connect_error() -> None:
    """Nothing went out: the jobs retry it (httpx.ConnectError is one of their NOT_SENT)."""
    client = Http2Client(ssl.create_default_context(), 2.0)
    with pytest.raises(httpx.ConnectError):
        await client.post(f"https://127.0.0.1:{free_port()}/x", b"{}", {})
    await client.aclose()


async def test_cancelled_request_leaves_the_connection_usable(server: TLSServer) -> None:
    """A send cut off by its timeout resets its stream; the next request on the same client still works."""
    client = client_for(server, connections=1)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await client.post(f"{server.url}/echo", b"x" * 100, {})
        answer = await client.post(f"{server.url}/echo", b"y" * 10, {})
    finally:
        await client.aclose()
    assert answer.json()["length"] == 10
