"""Carrier-grade NAT: 10,000 mobile readers behind one public address connect at the moment breaking news lands.

The per-address and per-second connection limits protect a hub from one flooding host, but a carrier's NAT (or a
load balancer without the PROXY protocol) puts thousands of real readers behind one address. With the default
limits, none of them may be refused: every one of 10,000 SSE readers from 127.0.0.1, connecting all at once while
the flash is posted, gets it exactly once. Loopback, one hub with the default settings, raw sockets on this side
(a full client per reader would measure the test, not the hub).
"""

from __future__ import annotations

import asyncio
import resource
import time
import uuid

import httpx
import pytest

from ticker_service.settings import Settings

from ..support.flashes import publish
from ..support.processes import TIMEOUT, Service, ServiceFactory

SURGE = 10_000
FILES_NEEDED = SURGE + 1_000  # each end of each connection is a file, the test process's and the hub's (a child)


@pytest.fixture(scope="module")
def defaults(service_factory: ServiceFactory) -> Service:
    """A hub with the default limits; the open-files limit raised (for this process and the hub it starts)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard == resource.RLIM_INFINITY or hard >= FILES_NEEDED, f"RLIMIT_NOFILE's hard limit {hard} is too low"
    if soft != resource.RLIM_INFINITY and soft < FILES_NEEDED:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_NEEDED, hard))
    return service_factory(name="carrier-nat")


async def sse_reader(port: int, since: str, until: bytes) -> tuple[bytes, bytes]:
    """Open an SSE stream resuming at ``since``; read until ``until`` has arrived: (response head, stream)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: {since}\r\n\r\n"
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            return head, await reader.read()
        stream = b""
        while until not in stream:
            chunk = await reader.read(65536)
            if not chunk:
                break
            stream += chunk
        return head, stream
    finally:
        writer.close()


async def readers_count(client: httpx.AsyncClient, service: Service) -> int:
    return int((await client.get(f"{service.base_url}/readyz")).json()["readers"])


@pytest.mark.timeout(300)
async def test_10000_readers_behind_one_address_all_get_the_breaking_flash(defaults: Service) -> None:
    settings = Settings()
    assert settings.max_connections_per_ip >= SURGE and settings.new_connections_burst >= SURGE
    port = int(defaults.base_url.rsplit(":", 1)[1])
    headline = f"BREAKING: surge {uuid.uuid4()}"
    end = f"surge over {uuid.uuid4()}"
    # A new connection per request: under the surge, the test's own loop may leave a kept-alive connection idle for
    # longer than the hub's keep-alive timeout, and a request raced against its close is no fault of the hub's.
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=3 * TIMEOUT, limits=fresh) as client:
        since = (await client.get(f"{defaults.base_url}/v1/flashes")).json()["last_event_id"]
        started = time.monotonic()
        readers = [asyncio.create_task(sse_reader(port, since, end.encode())) for _ in range(SURGE)]
        await publish(client, defaults, headline)  # the news lands while the surge is under way
        deadline = started + 120
        while (count := await readers_count(client, defaults)) < SURGE and not any(r.done() for r in readers):
            assert time.monotonic() < deadline, f"only {count} readers connected"
            await asyncio.sleep(0.1)
        connected = time.monotonic() - started
        await publish(client, defaults, end)
        results = await asyncio.wait_for(asyncio.gather(*readers), 120)
        finished = time.monotonic() - started

    refused = [head.split(b"\r\n", 1)[0] for head, _ in results if not head.startswith(b"HTTP/1.1 200 ")]
    print(f"\n{SURGE} readers from one address: all connected in {connected:.1f}s, all done in {finished:.1f}s")
    assert not refused, f"{len(refused)} refused, e.g. {refused[:3]}"
    news, over = headline.encode(), end.encode()
    assert all(stream.count(news) == 1 and stream.count(over) == 1 for _, stream in results)
