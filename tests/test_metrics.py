"""``/metrics`` of a real ``ticker hub --workers 2`` and ``ticker worker`` sharing one multiprocess directory: the
figures of both hub processes and the worker add up, and follow readers, flashes, resumes and Redis reconnects."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from .support.flashes import publish
from .support.processes import TIMEOUT, Service, ServiceFactory, free_port, wait_ready
from .support.readers import next_ws_event, sse_reader, stalled_reader, ws_reader

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def hubs(service_factory: ServiceFactory) -> Service:
    """A private Redis, one ``ticker hub --workers 2`` and a worker serving its metrics on a port of its own."""
    tmp = service_factory.directory("metrics")
    worker_port = free_port()
    service = service_factory(
        "redis",
        directory=tmp,
        args=("--workers", "2"),
        worker_env={"TICKER_WORKER_METRICS_PORT": str(worker_port)},
        PROMETHEUS_MULTIPROC_DIR=str(tmp / "prometheus"),
        # Small buffers, so that a reader that stops reading is cut off within a few dozen flashes.
        TICKER_WRITE_BUFFER_LIMIT_BYTES="16384",
        TICKER_SOCKET_SEND_BUFFER_BYTES="16384",
    )
    service.env["WORKER_METRICS_URL"] = f"http://127.0.0.1:{worker_port}/metrics"
    return service


def scrape(service: Service, url: str = "") -> list[tuple[str, dict[str, str], float]]:
    response = httpx.get(url or f"{service.base_url}/metrics", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (over processes, other labels)."""
    return sum(v for n, sample_labels, v in samples if n == name and labels.items() <= sample_labels.items())


async def until(service: Service, check: str, predicate: object) -> list[tuple[str, dict[str, str], float]]:
    """Scrape until ``predicate(samples)`` holds (polling with a deadline)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        samples = await asyncio.to_thread(scrape, service)
        if predicate(samples):  # type: ignore[operator]
            return samples
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"metrics never showed {check}: {[s for s in samples if s[0].startswith('ticker')]}")
        await asyncio.sleep(0.05)


async def test_readers_flashes_and_jobs_add_up_across_processes(hubs: Service) -> None:
    async with (
        ws_reader(hubs, "lang=en") as ws1,
        ws_reader(hubs, "lang=en") as ws2,
        ws_reader(hubs, "lang=en") as ws3,
        sse_reader(hubs, "lang=ar"),
        sse_reader(hubs, "lang=ar"),
    ):
        await until(
            hubs,
            "3 English WebSocket and 2 Arabic SSE readers",
            lambda s: (
                value(s, "ticker_readers", transport="websocket", language="en") == 3
                and value(s, "ticker_readers", transport="sse", language="ar") == 2
            ),
        )
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            doc = await publish(client, hubs, "BREAKING: metrics count this", language="en")
            refused = await client.post(f"{hubs.base_url}/v1/flashes", json={}, headers={"Authorization": "Bearer x"})
            assert refused.status_code == 401
        for ws in (ws1, ws2, ws3):
            assert (await next_ws_event(ws))["flash"]["uri"] == doc["uri"]
        samples = await until(
            hubs,
            "deliveries, fan-out latency in both processes, ingest outcomes and the worker's job",
            lambda s: (
                value(s, "ticker_events_delivered_total") >= 3
                and value(s, "ticker_fanout_latency_seconds_count") >= 2
                and value(s, "ticker_ingest_requests_total", method="POST", status="201") >= 1
                and value(s, "ticker_ingest_requests_total", method="POST", status="401") >= 1
                and value(s, "ticker_fanout_jobs_total", outcome="ok") >= 1
            ),
        )
        assert value(samples, "ticker_ingest_latency_seconds_count", method="POST") >= 2
        assert value(samples, "ticker_fanout_latency_seconds_bucket", le="+Inf") == value(
            samples, "ticker_fanout_latency_seconds_count"
        )
        assert value(samples, "ticker_queue_depth") == 0
        # The worker also serves its own /metrics (for a worker on a host without hubs).
        own = scrape(hubs, hubs.env["WORKER_METRICS_URL"])
        assert value(own, "ticker_fanout_jobs_total", outcome="ok") == value(
            samples, "ticker_fanout_jobs_total", outcome="ok"
        )

        # A reader resuming from before the flash gets it replayed; a bad message closes a reader.
        resume_from = await _before(hubs)
        async with ws_reader(hubs, f"lang=en&last_event_id={resume_from}", from_now=False) as ws:
            assert (await next_ws_event(ws))["flash"]["uri"] == doc["uri"]
        await ws1.send("not json")
        with pytest.raises(websockets.ConnectionClosed):
            await next_ws_event(ws1)
    await until(
        hubs,
        "the replay, the bad message and every reader gone",
        lambda s: (
            value(s, "ticker_replayed_events_total") >= 1
            and value(s, "ticker_reader_disconnects_total", reason="bad_message") >= 1
            and value(s, "ticker_readers") == 0
        ),
    )


async def _before(service: Service) -> str:
    """The event id just before the last one (the resume point for the last flash)."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        last = (await client.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
    epoch, ms, seq = last.rsplit("-", 2)
    return f"{epoch}-{int(ms) - 1}-0"


async def test_redis_reconnects_are_counted(hubs: Service) -> None:
    before = await asyncio.to_thread(scrape, hubs)
    assert hubs.redis is not None
    with hubs.redis.client() as client:
        client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await until(
        hubs,
        "both hub processes and the worker reconnecting",
        lambda s: (
            value(s, "ticker_redis_reconnects_total", component="hub")
            >= value(before, "ticker_redis_reconnects_total", component="hub") + 2
            and value(s, "ticker_redis_reconnects_total", component="worker")
            >= value(before, "ticker_redis_reconnects_total", component="worker") + 1
        ),
    )
    wait_ready(hubs.base_url, hubs.processes[0])


async def test_a_stalled_reader_counts_as_a_slow_disconnect(hubs: Service) -> None:
    def slow(samples: list[tuple[str, dict[str, str], float]]) -> float:
        return value(samples, "ticker_reader_disconnects_total", reason="slow")

    port = int(hubs.base_url.rsplit(":", 1)[1])
    _, writer = await stalled_reader(port)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            for i in range(100):  # until its buffers fill up and the hub cuts it off
                await publish(client, hubs, "BREAKING: " + "s" * 240, language="en")
                if i % 10 == 9 and slow(await asyncio.to_thread(scrape, hubs)):
                    break
        await until(hubs, "the stalled reader cut off", lambda s: slow(s) == 1)
    finally:
        writer.close()
