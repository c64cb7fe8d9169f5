"""Redis Sentinel failover mid-stream: one master, one replica and three sentinels (``redis-server --sentinel``, the
program Debian's ``redis-sentinel`` runs). A hub and a worker that only know the sentinels follow a forced
``SENTINEL FAILOVER`` without a restart: a connected reader keeps receiving, and flashes posted after it arrive.
The same failover under load, with 1,000 readers over 3 hubs, is one of the faults of ``tests/test_chaos.py``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support.flashes import flash_body
from .support.processes import TIMEOUT, Process, Service, create_token, start_hub, ticker, wait_until
from .support.readers import next_ws_event, ws_reader
from .support.sentinel import RedisNode, SentinelGroup, start_sentinels

FAILOVER_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, SentinelGroup]]:
    tmp = tmp_path_factory.mktemp("sentinel")
    group = start_sentinels(tmp)
    try:
        service = Service("sentinel", "", create_token(group.env), group.env)
        try:
            service.base_url, _ = start_hub(service, tmp)
            start_worker_on(service, tmp, group.master)
            yield service, group
        finally:
            service.stop()
    finally:
        group.stop()


def start_worker_on(service: Service, tmp: Path, master: RedisNode, name: str = "worker") -> Process:
    """``start_worker`` waits on ``service.redis``; here the worker's first poll shows on the master."""
    worker = Process(ticker("worker"), service.env, tmp / f"{name}.log")
    worker.start()
    service.processes.append(worker)
    with master.client() as client:
        wait_until(lambda: bool(client.exists("arq:queue:health-check")), "the worker's first poll")
    return worker


async def post_until_accepted(client: httpx.AsyncClient, service: Service, headline: str) -> dict[str, Any]:
    """Publish with one Idempotency-Key, retrying 503s and dropped connections (as ``ticker publish`` does)."""
    key = str(uuid.uuid4())
    deadline = asyncio.get_running_loop().time() + FAILOVER_TIMEOUT
    while True:
        try:
            response = await client.post(
                f"{service.base_url}/v1/flashes",
                json=flash_body(headline),
                headers=service.headers(**{"Idempotency-Key": key}),
            )
            if response.status_code == 201:
                return response.json()  # type: ignore[no-any-return]
            assert response.status_code in (409, 503), response.text
        except httpx.TransportError:
            pass
        assert asyncio.get_running_loop().time() < deadline, f"{headline!r} never accepted"
        await asyncio.sleep(0.1)


async def test_hub_and_worker_follow_a_sentinel_failover(sentinel_setup: tuple[Service, SentinelGroup]) -> None:
    service, group = sentinel_setup
    hub, worker = service.processes
    async with httpx.AsyncClient(timeout=TIMEOUT) as client, ws_reader(service, "lang=en") as ws:
        before = [await post_until_accepted(client, service, f"before failover {i}") for i in range(3)]
        for doc in before:
            assert (await next_ws_event(ws))["flash"]["uri"] == doc["uri"]

        new_master = await asyncio.to_thread(group.failover, 20)
        assert new_master is group.replica
        after = [await post_until_accepted(client, service, f"after failover {i}") for i in range(3)]
        for doc in after:
            assert (await next_ws_event(ws, FAILOVER_TIMEOUT))["flash"]["uri"] == doc["uri"]

    # Same processes throughout, now on the new master: it holds the history and the worker's heartbeat.
    assert hub.proc is not None and hub.proc.poll() is None
    assert worker.proc is not None and worker.proc.poll() is None
    with group.replica.client() as client:
        assert client.xlen("ticker:events") == 6
    ready = httpx.get(f"{service.base_url}/readyz", timeout=TIMEOUT)
    assert ready.status_code == 200, ready.text


async def test_a_master_short_of_replicas_answers_503(sentinel_setup: tuple[Service, SentinelGroup]) -> None:
    """With ``min-replicas-to-write`` above the replicas in sync, the master answers NOREPLICAS: a publish is a 503
    problem (nothing written, retry), not a 500; with the setting back, it is a 201."""
    service, group = sentinel_setup
    master = group.current_master()
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        with master.client() as redis:
            redis.config_set("min-replicas-to-write", 2)  # one replica only
            try:
                response = await client.post(
                    f"{service.base_url}/v1/flashes", json=flash_body("refused"), headers=service.headers()
                )
            finally:
                redis.config_set("min-replicas-to-write", 0)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert (await post_until_accepted(client, service, "accepted again"))["uri"]
