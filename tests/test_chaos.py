"""Chaos: flashes keep coming while hubs, the worker and Redis are killed, frozen and restarted.

Private Redis with AOF (appendfsync always), two hubs, one worker, 200 readers (half WebSocket, half SSE, each a
``TickerClient`` that fails over between the hubs and resumes by event id). 300 flashes are posted at random
intervals while, at random moments, one hub is killed (-9) and started again, the worker is killed (-9) and
started again, Redis is frozen (SIGSTOP) for 5 s, and Redis is restarted. At the end every reader must hold all
300 flashes exactly once, in event-id order, and every publish that got a 201 must be among them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from ticker_client import Event, TickerClient

from ticker_service.events import event_key

from .support.flashes import flash_body
from .support.processes import Process, Service, start_distributed, start_hub, wait_ready

READERS = 200
FLASHES = 300
SEED = int(os.environ.get("TICKER_CHAOS_SEED", str(random.randrange(1 << 30))))


async def publisher(service: Service, urls: list[str], rng: random.Random) -> dict[int, str]:
    """Post FLASHES flashes, each until it gets a 201 (same Idempotency-Key on every retry, any hub)."""
    accepted: dict[int, str] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for n in range(FLASHES):
            attempt = 0
            while n not in accepted:
                url = urls[(n + attempt) % len(urls)]
                try:
                    response = await client.post(
                        f"{url}/v1/flashes",
                        json=flash_body(f"chaos {n}"),
                        headers=service.headers(**{"Idempotency-Key": f"chaos-{SEED}-{n}"}),
                    )
                    if response.status_code == 201:
                        accepted[n] = response.json()["uri"]
                        break
                    assert response.status_code in (409, 503), response.text
                except httpx.TransportError:
                    pass
                attempt += 1
                assert attempt < 200, f"flash {n} never accepted"
                await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * rng.random())
            await asyncio.sleep(rng.uniform(0, 0.3))
    return accepted


async def reader(urls: list[str], transport: str, since: str, got: list[Event]) -> None:
    async with TickerClient(urls, transport=transport, last_event_id=since, max_delay=2.0) as client:  # type: ignore[arg-type]
        async for event in client:
            got.append(event)
            if sum(1 for e in got if e.type == "flash") >= FLASHES:
                return


async def chaos(service: Service, hubs: list[Process], worker: Process, rng: random.Random, log: list[str]) -> None:
    """The faults, in a random order, at random moments, while the publisher runs."""
    assert service.redis is not None
    redis = service.redis

    async def kill_hub() -> None:
        hub = rng.choice(hubs)
        assert hub.proc is not None
        hub.proc.kill()
        await asyncio.to_thread(hub.proc.wait)
        await asyncio.sleep(rng.uniform(1, 3))
        hub.start()
        url = f"http://127.0.0.1:{hub.args[hub.args.index('--port') + 1]}"
        await asyncio.to_thread(wait_ready, url, hub)

    async def kill_worker() -> None:
        assert worker.proc is not None
        worker.proc.kill()
        await asyncio.to_thread(worker.proc.wait)
        await asyncio.sleep(rng.uniform(1, 3))
        worker.start()

    async def freeze_redis() -> None:
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(5)
        redis.proc.send_signal(signal.SIGCONT)

    async def restart_redis() -> None:
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(rng.uniform(0.5, 2))
        await asyncio.to_thread(redis.start)

    faults = [kill_hub, kill_worker, freeze_redis, restart_redis, kill_hub]
    rng.shuffle(faults)
    for fault in faults:
        await asyncio.sleep(rng.uniform(3, 8))
        started = time.monotonic()
        await fault()
        log.append(f"{fault.__name__} ({time.monotonic() - started:.1f}s)")


@pytest.mark.timeout(300)
async def test_nothing_lost_nothing_duplicated_through_chaos(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    service = start_distributed(tmp_path, persistent=True)
    try:
        hub_b_url, hub_b = start_hub(service, tmp_path, "hub-b")
        hubs = [service.processes[0], hub_b]
        worker = service.processes[1]
        urls = [service.base_url, hub_b_url]
        async with httpx.AsyncClient() as client:
            since = (await client.get(f"{urls[0]}/v1/flashes")).json()["last_event_id"]
        received: list[list[Event]] = [[] for _ in range(READERS)]
        readers = [
            asyncio.create_task(
                reader(urls[i % 2 :] + urls[: i % 2], "ws" if i < READERS // 2 else "sse", since, received[i])
            )
            for i in range(READERS)
        ]
        log: list[str] = []
        accepted, _ = await asyncio.gather(publisher(service, urls, rng), chaos(service, hubs, worker, rng, log))
        done, pending = await asyncio.wait(readers, timeout=90)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
    finally:
        service.stop()

    expected = set(accepted.values())
    index = {uri: n for n, uri in accepted.items()}
    summary = sorted({(sum(1 for e in r if e.type == "flash"), len(r)) for r in received})
    print(f"\nchaos seed {SEED}: faults {log}; (flashes, events) per reader: {summary[:10]}")
    for events in received[:3] + received[-3:]:
        missing = sorted(index[u] for u in expected - {e.uri for e in events})
        print(f"reader sample: missing {missing[:5]}...{missing[-5:]} ({len(missing)})")
    complete = 0
    for i, events in enumerate(received):
        kinds = {e.type for e in events}
        uris = [e.uri for e in events if e.type == "flash"]
        ids = [e.event_id for e in events]
        assert kinds <= {"flash"}, f"reader {i} got {kinds - {'flash'}}"
        assert len(uris) == len(set(uris)), f"reader {i} got duplicates"
        assert ids == sorted(ids, key=event_key), f"reader {i} got events out of order"
        assert set(uris) == expected, f"reader {i} missed {len(expected - set(uris))} flashes"
        complete += 1
    counts: dict[str, Any] = {
        "seed": SEED,
        "published (201)": len(accepted),
        "readers complete": f"{complete}/{READERS}",
        "deliveries": sum(len(r) for r in received),
        "faults": log,
    }
    print("\nchaos:", counts)
