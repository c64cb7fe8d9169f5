"""The Python client against real hubs: both transports, resume across a hub restart, refusals, backoff."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
from ticker_client import Event, TerminalError, TickerClient
from ticker_client.backoff import delay, hint_from_reason

from .support.flashes import publish
from .support.processes import Service, start_distributed, start_hub


async def take(client: TickerClient, n: int, timeout: float = 15) -> list[Event]:
    events: list[Event] = []

    async def run() -> None:
        async for event in client:
            events.append(event)
            if len(events) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return events


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_client_follows_flashes(service: Service, transport: str) -> None:
    async with httpx.AsyncClient() as http:
        since = (await http.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
        async with TickerClient(service.base_url, lang="ro", transport=transport, last_event_id=since) as client:
            reader = asyncio.create_task(take(client, 2))
            first = await publish(http, service, "client: one", language="ro")
            await publish(http, service, "client: not for us", language="hu")
            second = await publish(http, service, "client: two", language="ro")
            events = await reader
    assert [e.uri for e in events] == [first["uri"], second["uri"]]
    assert [e.type for e in events] == ["flash", "flash"]
    assert events[1].headline == "client: two"
    assert client.last_event_id == events[1].event_id


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_bad_filter_is_terminal(service: Service, transport: str) -> None:
    async with TickerClient(service.base_url, max_urgency=12, transport=transport) as client:
        with pytest.raises(TerminalError):
            await take(client, 1, timeout=10)


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_client_fails_over_and_resumes_without_loss(tmp_path: Path, transport: str) -> None:
    """Hub A is killed (-9); the client moves to hub B and resumes by event id: nothing lost, nothing twice."""
    service = start_distributed(tmp_path)
    try:
        hub_b, _ = start_hub(service, tmp_path, "hub-b")
        hub_a = service.processes[0]
        async with httpx.AsyncClient() as http:
            since = (await http.get(f"{service.base_url}/v1/flashes")).json()["last_event_id"]
            async with TickerClient([service.base_url, hub_b], transport=transport, last_event_id=since) as client:
                reader = asyncio.create_task(take(client, 6, timeout=30))
                docs = [await publish(http, service, f"failover {i}") for i in range(3)]
                assert hub_a.proc is not None
                while client.last_event_id == since:  # bounded by take()'s timeout
                    await asyncio.sleep(0.01)
                hub_a.proc.send_signal(signal.SIGKILL)
                service.base_url = hub_b
                docs += [await publish(http, service, f"failover {i}") for i in range(3, 6)]
                events = await reader
        assert [e.uri for e in events] == [d["uri"] for d in docs]
        assert client.reconnects >= 1
    finally:
        service.stop()


def test_backoff_has_full_jitter_a_cap_and_honours_hints() -> None:
    waits = [delay(attempt) for attempt in range(1, 12) for _ in range(50)]
    assert min(waits) >= 0 and max(waits) <= 20
    assert len({round(w, 3) for w in waits}) > 100  # jittered, not a fixed schedule
    assert all(delay(1, hint=3.0) >= 3.0 for _ in range(20))
    assert hint_from_reason("service restart; resume with last_event_id; retry=2500") == 2.5
    assert hint_from_reason("no hint") is None
