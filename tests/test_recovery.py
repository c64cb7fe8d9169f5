"""Recovery on the distributed path: a hub that loses its Redis subscription catches up; storms hit memory."""

from __future__ import annotations

import asyncio

import httpx

from .support import Service, next_ws_event, publish, sse_reader, ws_reader


def command_calls(service: Service, command: str) -> int:
    assert service.redis is not None
    with service.redis.client() as redis:
        stats = redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_hub_catches_up_after_its_subscription_is_cut(distributed: Service) -> None:
    """Flashes published while the hub is resubscribing reach its readers from the history, once, in order."""
    assert distributed.redis is not None
    async with ws_reader(distributed, "lang=sv") as ws, sse_reader(distributed, "lang=sv") as sse:
        async with httpx.AsyncClient() as client:
            with distributed.redis.client() as redis:
                killed = redis.client_kill_filter(_type="pubsub")
            assert killed >= 1
            docs = [await publish(client, distributed, f"gap {i}", language="sv") for i in range(5)]
            ws_events = [await next_ws_event(ws, timeout=15) for _ in range(5)]
            sse_events = [await sse.next_event(timeout=15) for _ in range(5)]
            marker = await publish(client, distributed, "after the gap", language="sv")
            assert (await next_ws_event(ws, timeout=15))["flash"]["uri"] == marker["uri"]
    assert [e["flash"]["uri"] for e in ws_events] == [d["uri"] for d in docs]
    assert [e["flash"]["uri"] for e in sse_events] == [d["uri"] for d in docs]


async def test_reconnect_storm_is_served_from_the_hubs_memory(distributed: Service) -> None:
    """200 readers resuming at once from a recent event id cause no history read in Redis."""
    async with httpx.AsyncClient() as client:
        first = await publish(client, distributed, "storm: seen", language="da")
        listing = (await client.get(f"{distributed.base_url}/v1/flashes?lang=da&limit=1")).json()
        assert listing["flashes"][0]["uri"] == first["uri"]
        since = listing["last_event_id"]
        missed = [await publish(client, distributed, f"storm: missed {i}", language="da") for i in range(3)]
        # The hub has had them live (this probe is served from memory or Redis; the storm must not be).
        async with ws_reader(distributed, f"lang=da&last_event_id={since}") as probe:
            for doc in missed:
                assert (await next_ws_event(probe))["flash"]["uri"] == doc["uri"]
    before = command_calls(distributed, "xrange")

    async def resume() -> list[str]:
        async with ws_reader(distributed, f"lang=da&last_event_id={since}") as ws:
            return [(await next_ws_event(ws))["flash"]["uri"] for _ in range(3)]

    results = await asyncio.gather(*(resume() for _ in range(200)))
    after = command_calls(distributed, "xrange")
    assert all(r == [d["uri"] for d in missed] for r in results)
    assert after - before == 0, f"{after - before} XRANGE calls for 200 resuming readers"


async def test_a_duplicate_fanout_job_delivers_nothing_twice(distributed: Service) -> None:
    """arq runs jobs at least once: the same fan-out queued again (another job id) reaches no reader twice."""
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.jobs import JobStatus

    from .support import flash_id

    assert distributed.redis is not None
    async with httpx.AsyncClient() as client, ws_reader(distributed, "lang=fi") as ws:
        doc = await publish(client, distributed, "duplicate job", language="fi")
        assert (await next_ws_event(ws))["flash"]["uri"] == doc["uri"]
        pool = await create_pool(RedisSettings.from_dsn(distributed.redis.url))
        try:
            job = await pool.enqueue_job("fanout", flash_id(doc), "1", _job_id="duplicate-of-the-first")
            assert job is not None
            assert await job.result(timeout=10) is not None  # it ran, and found the event already published
            assert await job.status() == JobStatus.complete
        finally:
            await pool.aclose()
        marker = await publish(client, distributed, "after the duplicate", language="fi")
        assert (await next_ws_event(ws))["flash"]["uri"] == marker["uri"]
