"""Chaos: flashes keep coming while hubs, the worker and Redis are killed, frozen, cut off and restarted.

Private Redis with AOF (appendfsync always), two hubs, one worker, 200 readers (half WebSocket, half SSE, each a
``TickerClient`` that fails over between the hubs and resumes by event id). 300 flashes are posted at random
intervals while, at random moments, one hub is killed (-9) and started again, the worker is killed (-9) and
started again, Redis is frozen (SIGSTOP) for 5 s, Redis is restarted, and the second hub and the worker are each
cut off from Redis by a silent partition (:class:`~tests.support.blackhole.BlackHole`: no RST, no FIN). At the end
every reader must hold all 300 flashes exactly once, in event-id order, and every publish that got a 201 must be
among them.

A silent partition is also tested alone, hub then worker, for each way a partition can treat the bytes in flight:
it must be noticed within ``TICKER_REDIS_TIMEOUT_SECONDS`` (the hub says so on ``/readyz``), and once it heals
the hub subscribes again and catches up, and the worker takes up the queue, with no flash missed or repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ticker_client import Event, TickerClient

from ticker_service.events import event_key

from .support.blackhole import BlackHole
from .support.flashes import flash_body, publish
from .support.processes import (
    TIMEOUT,
    Process,
    RedisServer,
    Service,
    base_env,
    create_token,
    free_port,
    start_hub,
    start_worker,
    ticker,
    wait_ready,
)
from .support.sentinel import start_sentinels

READERS = 200
FLASHES = 300
SENTINEL_READERS = 1_000
SENTINEL_FLASHES = 150
SEED = int(os.environ.get("TICKER_CHAOS_SEED", str(random.randrange(1 << 30))))
REDIS_TIMEOUT = 3.0  # TICKER_REDIS_TIMEOUT_SECONDS's default: a silent partition is noticed within this
SLACK = 2.0  # what a shared, loaded 2-core machine may add to a bound before the test calls it broken


@dataclass
class Partitionable:
    """A private Redis; hub A (``service.base_url``) on it directly; hub B and the worker each through their own
    :class:`BlackHole`; the worker's ``/metrics`` on its own port."""

    service: Service
    hub_b_url: str
    hub_b: Process
    worker: Process
    hub_hole: BlackHole
    worker_hole: BlackHole
    worker_metrics_url: str


def start_partitionable(tmp: Path, stack: contextlib.ExitStack) -> Partitionable:
    redis_server = RedisServer(tmp, persistent=True)
    redis_server.start()
    env = base_env(REDIS_URL=redis_server.url)
    service = Service("redis", "", create_token(env), env, [], redis_server, tmp)
    stack.callback(service.stop)
    hub_hole = stack.enter_context(BlackHole(redis_server.port))
    worker_hole = stack.enter_context(BlackHole(redis_server.port))
    service.base_url, _ = start_hub(service, tmp, "hub-a")
    hub_b_url, hub_b = start_hub(service, tmp, "hub-b", extra_env={"REDIS_URL": hub_hole.url})
    metrics_port = free_port()
    worker_env = {"REDIS_URL": worker_hole.url, "TICKER_WORKER_METRICS_PORT": str(metrics_port)}
    worker = start_worker(service, tmp, extra_env=worker_env)
    return Partitionable(
        service, hub_b_url, hub_b, worker, hub_hole, worker_hole, f"http://127.0.0.1:{metrics_port}/metrics"
    )


def reconnects(metrics_url: str, component: str) -> float:
    """``ticker_redis_reconnects_total`` of a component: it counts each subscription (or worker) lost."""
    text = httpx.get(metrics_url, timeout=TIMEOUT).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ticker_redis_reconnects_total" and sample.labels.get("component") == component:
                return float(sample.value)
    return 0.0


def readyz(url: str) -> int:
    return httpx.get(f"{url}/readyz", timeout=TIMEOUT).status_code


async def seconds_until(check: Callable[[], bool], what: str, timeout: float = 60) -> float:
    """Poll a blocking ``check`` (in a thread) until it holds; how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if await asyncio.to_thread(check):
                return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


async def publisher(service: Service, urls: list[str], rng: random.Random, flashes: int) -> dict[int, str]:
    """Post ``flashes`` flashes, each until it gets a 201 (same Idempotency-Key on every retry, any hub)."""
    accepted: dict[int, str] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for n in range(flashes):
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


async def reader(urls: list[str], transport: str, since: str, got: list[Event], flashes: int) -> None:
    async with TickerClient(urls, transport=transport, last_event_id=since, max_delay=2.0) as client:  # type: ignore[arg-type]
        async for event in client:
            got.append(event)
            if sum(1 for e in got if e.type == "flash") >= flashes:
                return


Fault = Callable[[], Awaitable[None]]


def process_faults(hubs: list[Process], worker: Process, rng: random.Random) -> tuple[Fault, Fault]:
    """Killing (-9) a random hub, and the worker, each started again a moment later."""

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

    return kill_hub, kill_worker


async def chaos(faults: list[Fault], rng: random.Random, log: list[str]) -> None:
    """The faults, in a random order, at random moments, while the publisher runs."""
    rng.shuffle(faults)
    for fault in faults:
        await asyncio.sleep(rng.uniform(3, 8))
        started = time.monotonic()
        await fault()
        log.append(f"{fault.__name__} ({time.monotonic() - started:.1f}s)")


async def run_chaos(
    service: Service, urls: list[str], faults: list[Fault], rng: random.Random, readers: int, flashes: int
) -> None:
    """``readers`` readers (half WebSocket, half SSE, spread over ``urls``, each failing over to the next) while
    ``flashes`` are posted and the faults happen; then every reader must hold every accepted flash exactly once."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        since = (await client.get(f"{urls[0]}/v1/flashes")).json()["last_event_id"]
    received: list[list[Event]] = [[] for _ in range(readers)]
    tasks = [
        asyncio.create_task(
            reader(
                urls[i % len(urls) :] + urls[: i % len(urls)],
                "ws" if i < readers // 2 else "sse",
                since,
                received[i],
                flashes,
            )
        )
        for i in range(readers)
    ]
    log: list[str] = []
    try:
        accepted, _ = await asyncio.gather(publisher(service, urls, rng, flashes), chaos(faults, rng, log))
        done, pending = await asyncio.wait(tasks, timeout=90)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()

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
        "readers complete": f"{complete}/{readers}",
        "deliveries": sum(len(r) for r in received),
        "faults": log,
    }
    print("\nchaos:", counts)


@pytest.mark.timeout(300)
async def test_nothing_lost_nothing_duplicated_through_chaos(tmp_path: Path) -> None:
    """Two hubs (the second and the worker reach Redis through black holes), 200 readers, 300 flashes; faults:
    a hub killed twice, the worker killed, Redis frozen and restarted, hub B and the worker partitioned."""
    rng = random.Random(SEED)
    with contextlib.ExitStack() as stack:
        setup = start_partitionable(tmp_path, stack)
        service = setup.service
        assert service.redis is not None
        redis = service.redis
        hubs = [service.processes[0], setup.hub_b]
        kill_hub, kill_worker = process_faults(hubs, setup.worker, rng)

        async def freeze_redis() -> None:
            assert redis.proc is not None
            redis.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(5)
            redis.proc.send_signal(signal.SIGCONT)

        async def restart_redis() -> None:
            await asyncio.to_thread(redis.stop)
            await asyncio.sleep(rng.uniform(0.5, 2))
            await asyncio.to_thread(redis.start)

        def partition(hole: BlackHole, name: str) -> Fault:
            async def fault() -> None:
                hole.partition(rng.choice(["stall", "drop"]))
                await asyncio.sleep(rng.uniform(REDIS_TIMEOUT + 1, REDIS_TIMEOUT + 4))
                hole.heal()

            fault.__name__ = name
            return fault

        faults = [kill_hub, kill_worker, freeze_redis, restart_redis, kill_hub]
        faults += [partition(setup.hub_hole, "partition_hub"), partition(setup.worker_hole, "partition_worker")]
        await run_chaos(service, [service.base_url, setup.hub_b_url], faults, rng, READERS, FLASHES)


@pytest.mark.timeout(420)
async def test_nothing_lost_nothing_duplicated_through_sentinel_failovers(tmp_path: Path) -> None:
    """Redis Sentinel (a master, a replica, three sentinels; ``min-replicas-to-write 1``), three hubs and a worker
    that only know the sentinels, 1,000 readers, 150 flashes; faults: the master killed (the sentinels promote the
    replica, the old master comes back as its replica), a forced failover, a hub killed, the worker killed."""
    rng = random.Random(SEED)
    group = start_sentinels(tmp_path, min_replicas_to_write=1)
    service = Service("sentinel", "", create_token(group.env), group.env, directory=tmp_path)
    try:
        urls = [start_hub(service, tmp_path, f"hub-{i}")[0] for i in range(3)]
        service.base_url = urls[0]
        worker = Process(ticker("worker"), service.env, tmp_path / "worker.log")
        worker.start()
        service.processes.append(worker)
        hubs = service.processes[:3]
        kill_hub, kill_worker = process_faults(hubs, worker, rng)

        async def master_crash() -> None:
            """The master killed: every hub must say so on /readyz, and be ready again on the promoted replica."""
            crashed = time.monotonic()
            failover = asyncio.create_task(asyncio.to_thread(group.crash_master))
            await seconds_until(lambda: all(readyz(url) == 503 for url in urls), "every hub not ready")
            noticed = time.monotonic() - crashed
            await seconds_until(lambda: all(readyz(url) == 200 for url in urls), "every hub ready again")
            print(f"\nmaster killed: all hubs not ready after {noticed:.1f}s, ready {time.monotonic() - crashed:.1f}s")
            await failover

        async def forced_failover() -> None:
            """SENTINEL FAILOVER with the old master alive: it takes writes until the sentinels demote it, seconds
            later, and loses them then, unless it refuses them for want of a replica (min-replicas-to-write)."""
            await asyncio.to_thread(group.failover)

        faults = [master_crash, forced_failover, kill_hub, kill_worker]
        await run_chaos(service, urls, faults, rng, SENTINEL_READERS, SENTINEL_FLASHES)
    finally:
        service.stop()
        group.stop()


async def collect(url: str, since: str, got: list[Event]) -> None:
    """One WebSocket reader on one hub only (no failover): what it gets, the hub has delivered."""
    async with TickerClient([url], last_event_id=since, max_delay=1.0) as client:
        async for event in client:
            got.append(event)


@pytest.mark.parametrize("mode", ["stall", "drop"])
@pytest.mark.timeout(240)
async def test_a_silent_partition_is_noticed_and_healed(tmp_path: Path, mode: Literal["stall", "drop"]) -> None:
    """Hub B, then the worker, cut off from Redis without a word while flashes keep coming through hub A: each
    notices within the Redis timeout (hub B answers 503 on /readyz), and once the partition heals, a reader on hub B
    holds every flash exactly once, in order."""
    figures: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        setup = start_partitionable(tmp_path, stack)
        service, hub_metrics = setup.service, f"{setup.hub_b_url}/metrics"
        got: list[Event] = []
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            since = (await client.get(f"{service.base_url}/v1/flashes")).json()["last_event_id"]
            reader = asyncio.create_task(collect(setup.hub_b_url, since, got))
            posted: list[str] = []

            async def post(headline: str) -> None:
                posted.append((await publish(client, service, headline))["uri"])

            def all_delivered() -> bool:
                return set(posted) <= {e.uri for e in got}

            try:
                for i in range(2):
                    await post(f"before {i}")
                await seconds_until(all_delivered, "the first flashes")

                # Hub B: its subscription and its commands hang, nothing is closed.
                before = await asyncio.to_thread(reconnects, hub_metrics, "hub")
                setup.hub_hole.partition(mode)
                cut = time.monotonic()
                for i in range(3):
                    await post(f"hub B cut off {i}")

                async def hub_noticed() -> None:
                    await seconds_until(lambda: reconnects(hub_metrics, "hub") > before, "hub B noticing")
                    figures["hub: notices"] = time.monotonic() - cut

                async def hub_not_ready() -> None:
                    await seconds_until(lambda: readyz(setup.hub_b_url) == 503, "hub B not ready")
                    figures["hub: not ready"] = time.monotonic() - cut

                await asyncio.gather(hub_noticed(), hub_not_ready())
                await asyncio.sleep(1.0)  # the partition outlasts the notice
                setup.hub_hole.heal()
                healed = time.monotonic()
                await seconds_until(lambda: readyz(setup.hub_b_url) == 200, "hub B ready again")
                figures["hub: ready again"] = time.monotonic() - healed
                await seconds_until(all_delivered, "hub B catching up")
                figures["hub: caught up"] = time.monotonic() - healed

                # The worker: its wake-up subscription and arq's polling hang; ingest queues jobs all the same.
                before = await asyncio.to_thread(reconnects, setup.worker_metrics_url, "worker")
                setup.worker_hole.partition(mode)
                cut = time.monotonic()
                for i in range(3):
                    await post(f"worker cut off {i}")
                await seconds_until(
                    lambda: reconnects(setup.worker_metrics_url, "worker") > before, "the worker noticing"
                )
                figures["worker: notices"] = time.monotonic() - cut
                await asyncio.sleep(1.0)
                setup.worker_hole.heal()
                healed = time.monotonic()
                await seconds_until(all_delivered, "the worker catching up")
                figures["worker: caught up"] = time.monotonic() - healed
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    print(f"\nsilent partition ({mode}), seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    flashes = [e for e in got if e.type == "flash"]
    uris = [e.uri for e in flashes]
    assert len(uris) == len(set(uris)), "a flash was delivered twice"
    assert set(uris) == set(posted)
    ids = [e.event_id for e in flashes]
    assert ids == sorted(ids, key=event_key)
    for what in ("hub: notices", "hub: not ready", "worker: notices"):
        assert figures[what] <= REDIS_TIMEOUT + SLACK, figures
    for what in ("hub: ready again", "worker: caught up"):  # a retry in flight times out, then one backoff
        assert figures[what] <= REDIS_TIMEOUT + 3.0 + SLACK, figures
