"""Redis going away: every write is refused with 503 and nothing is half-written; the path recovers after."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from .support.flashes import flash_body, flash_id, publish
from .support.processes import Service, ServiceFactory, wait_ready
from .support.readers import next_ws_event, ws_reader


@pytest.fixture(scope="module")
def persistent(service_factory: ServiceFactory) -> Service:
    """The distributed path on a Redis with AOF (appendfsync always), so a restart keeps what was written."""
    return service_factory("redis", name="outage", persistent=True)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The shared ``client`` with more time: requests here run while Redis stops and starts under the hub."""
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


async def test_redis_down_is_503_and_nothing_is_written(persistent: Service, client: httpx.AsyncClient) -> None:
    assert persistent.redis is not None
    doc = await publish(client, persistent, "outage: before")
    url = f"{persistent.base_url}/v1/flashes"
    with persistent.redis.client() as redis:
        history_before = redis.xlen("ticker:events")
    persistent.redis.stop()
    try:
        attempts = [
            await client.post(url, json=flash_body("outage: lost?"), headers=persistent.headers()),
            await client.post(
                url,
                json=flash_body("outage: keyed"),
                headers=persistent.headers(**{"Idempotency-Key": "during-outage"}),
            ),
            await client.patch(f"{url}/{flash_id(doc)}", json={"headline": "x"}, headers=persistent.headers()),
            await client.delete(f"{url}/{flash_id(doc)}", headers=persistent.headers()),
            await client.get(url),
        ]
        for response in attempts:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"]
        assert (await client.get(f"{persistent.base_url}/readyz")).status_code == 503
        assert (await client.get(f"{persistent.base_url}/healthz")).status_code == 200
    finally:
        persistent.redis.start()
    with persistent.redis.client() as redis:
        assert redis.xlen("ticker:events") == history_before
    assert (await client.get(f"{url}/{flash_id(doc)}")).json() == doc
    wait_ready(persistent.base_url, persistent.processes[0])

    # The same Idempotency-Key works once Redis is back: the failed attempt did not leave a claim behind.
    async with ws_reader(persistent) as ws:
        again = await client.post(
            url, json=flash_body("outage: keyed"), headers=persistent.headers(**{"Idempotency-Key": "during-outage"})
        )
        assert again.status_code == 201, again.text
        event = await next_ws_event(ws, timeout=15)
    assert event["flash"]["uri"] == again.json()["uri"]
    with persistent.redis.client() as redis:
        assert redis.xlen("ticker:events") == history_before + 1


def test_cli_publish_retries_through_an_outage_and_publishes_once(persistent: Service) -> None:
    """`ticker publish` retries on 503 with one Idempotency-Key: Redis comes back, the flash exists once."""
    import subprocess

    from .support.processes import ROOT, ticker

    assert persistent.redis is not None
    headline = "BREAKING: published through an outage"
    persistent.redis.stop()
    try:
        proc = subprocess.Popen(
            ticker(
                "publish",
                headline,
                "--lang",
                "en",
                "--category",
                "politics",
                "--token",
                persistent.token,
                "--server",
                persistent.base_url,
                "--retries",
                "8",
            ),
            env=persistent.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        first = proc.stderr.readline()  # blocks until the first failed attempt is reported
        assert "retrying" in first and "503" in first
    finally:
        persistent.redis.start()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with persistent.redis.client() as redis:
        entries = redis.xrange("ticker:events")
    assert sum(1 for _, fields in entries if headline.encode() in fields[b"d"]) == 1
