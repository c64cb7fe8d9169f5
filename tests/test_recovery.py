"""Recovery on the distributed path: a hub that loses its Redis subscription catches up; storms hit memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from ticker_service.events import split_event_id

from .support.flashes import publish
from .support.processes import Service, run_ticker, start_distributed, start_embedded
from .support.readers import next_ws_event, sse_reader, ws_reader


def command_calls(service: Service, command: str | None = None) -> int:
    """Calls of one Redis command so far, or of all commands."""
    assert service.redis is not None
    with service.redis.client() as redis:
        stats = redis.info("commandstats")
    if command is None:
        return sum(int(v.get("calls", 0)) for v in stats.values())
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
    before, all_before = command_calls(distributed, "xrange"), command_calls(distributed)

    async def resume() -> list[str]:
        async with ws_reader(distributed, f"lang=da&last_event_id={since}") as ws:
            return [(await next_ws_event(ws))["flash"]["uri"] for _ in range(3)]

    results = await asyncio.gather(*(resume() for _ in range(200)))
    after, all_after = command_calls(distributed, "xrange"), command_calls(distributed)
    assert all(r == [d["uri"] for d in missed] for r in results)
    assert after - before == 0, f"{after - before} XRANGE calls for 200 resuming readers"
    # Whatever else ran meanwhile (the worker's polls, keepalive pings, INFO itself) is not per reader.
    print(f"\nRedis commands during a storm of 200 resuming readers: {all_after - all_before}")
    assert all_after - all_before < 100


async def test_a_duplicate_fanout_job_delivers_nothing_twice(distributed: Service) -> None:
    """arq runs jobs at least once: the same fan-out queued again (another job id) reaches no reader twice."""
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.jobs import JobStatus

    from .support.flashes import flash_id

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


async def test_resuming_across_a_lost_history_gets_a_reset(tmp_path: Path) -> None:
    """Redis lost its history (emptied, as by a restart without persistence): a resuming reader gets ``reset``
    with the current flashes instead of a silent gap, then goes on live."""
    service = start_distributed(tmp_path)
    try:
        assert service.redis is not None
        async with httpx.AsyncClient() as client:
            await publish(client, service, "before the loss", language="is")
            old = (await client.get(f"{service.base_url}/v1/flashes?lang=is")).json()["last_event_id"]
            with service.redis.client() as redis:
                redis.flushall()
            created = run_ticker(service.env, "token", "create", "--name", "again")
            service.token = created.stdout.strip().splitlines()[-1]
            async with ws_reader(service, "lang=is", from_now=False) as live_reader:
                now = await publish(client, service, "after the loss", language="is")
                assert (await next_ws_event(live_reader))["flash"]["uri"] == now["uri"]  # the hub saw the new epoch
            async with (
                ws_reader(service, f"lang=is&last_event_id={old}") as ws,
                sse_reader(service, "lang=is", headers={"Last-Event-ID": old}) as sse,
            ):
                reset = await next_ws_event(ws)
                sse_reset = await sse.next_event()
                live = await publish(client, service, "live after the reset", language="is")
                assert (await next_ws_event(ws))["flash"]["uri"] == live["uri"]
                assert (await sse.next_event())["flash"]["uri"] == live["uri"]
        assert reset["type"] == "reset"
        assert [f["uri"] for f in reset["flashes"]] == [now["uri"]]
        assert split_event_id(reset["event_id"])[0] != split_event_id(old)[0]
        assert sse_reset["event"] == "reset" and sse_reset["id"] == reset["event_id"]
        assert [f["uri"] for f in sse_reset["flash"]["flashes"]] == [now["uri"]]
    finally:
        service.stop()


async def test_resuming_from_before_the_retained_history_gets_a_reset(tmp_path: Path) -> None:
    service = start_embedded(tmp_path, TICKER_HISTORY_MAX_EVENTS="100")
    try:
        async with httpx.AsyncClient() as client:
            start = (await client.get(f"{service.base_url}/v1/flashes")).json()["last_event_id"]
            docs = [await publish(client, service, f"retention {i}", language="lt") for i in range(110)]
            async with ws_reader(service, f"lang=lt&last_event_id={start}") as ws:
                reset = await next_ws_event(ws)
        assert reset["type"] == "reset"
        assert [f["uri"] for f in reset["flashes"]] == [d["uri"] for d in reversed(docs)][:20]
    finally:
        service.stop()
