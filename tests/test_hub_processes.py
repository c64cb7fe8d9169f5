"""``ticker hub --workers N``: several hub processes share one port, each with its own Redis subscription."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from .support.flashes import publish
from .support.processes import Service, ServiceFactory, start_hub
from .support.readers import next_ws_event, ws_reader


@pytest.fixture(scope="module")
def two_process_hub(service_factory: ServiceFactory) -> Service:
    """The distributed service, read through a second hub started with ``--workers 2``."""
    service = service_factory("redis", name="hub-workers")
    assert service.directory is not None
    service.base_url, _ = start_hub(service, service.directory, "hub2", "--workers", "2")
    return service


async def test_every_process_serves_and_every_reader_gets_the_flash(two_process_hub: Service) -> None:
    service = two_process_hub
    async with httpx.AsyncClient() as client:
        pids: set[int] = set()
        for _ in range(200):  # bounded: the kernel spreads new connections over both processes
            async with httpx.AsyncClient() as fresh:  # a new connection each time
                body = (await fresh.get(f"{service.base_url}/readyz")).json()
            assert body["status"] == "ready"
            pids.add(body["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        async with contextlib.AsyncExitStack() as stack:
            # Separate connections, so that the kernel hands them to both processes.
            readers = [await stack.enter_async_context(ws_reader(service)) for _ in range(12)]
            doc = await publish(client, service, "BREAKING: every process")
            events = await asyncio.gather(*(next_ws_event(ws) for ws in readers))
    assert all(e["flash"]["uri"] == doc["uri"] for e in events)
