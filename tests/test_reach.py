"""Time to screen through the real path, in both modes: display receipts in (POST /v1/receipts, JSON or a beacon's
text/plain), refused when bad and never counted, summed per flash version and surface into DDSketch bins (across
hubs in Redis mode), read back by editors (GET /v1/flashes/{id}/reach), the operations page and Prometheus; and the
canary, publishing a private flash every second and reading it back through the hub without any reader seeing it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from ticker_client import TickerClient

from .support.flashes import flash_id, publish
from .support.processes import TIMEOUT, Service, ServiceFactory, create_token, start_hub
from .support.readers import SSEReader, next_ws_event, ws_reader

pytestmark = pytest.mark.asyncio(loop_scope="module")

RATE_LIMIT = 100  # every test here sends from 127.0.0.1 within a minute, the flood test from its own address


@pytest.fixture(scope="module", params=["embedded", "redis"])
def svc(request: pytest.FixtureRequest, service_factory: ServiceFactory) -> Service:
    service = service_factory(
        request.param,
        name=f"reach-{request.param}",
        TICKER_CANARY_SECONDS="1",
        TICKER_RECEIPTS_PER_MINUTE=str(RATE_LIMIT),
    )
    service.env["ADMIN_TOKEN"] = create_token(service.env, "ops", "admin")
    return service


def at(doc: dict[str, Any], seconds: float) -> str:
    """``seconds`` after the version's publish, as RFC 3339."""
    created = datetime.fromisoformat(doc["versionCreated"])
    return (created + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def receipt(doc: dict[str, Any], surface: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "flash": flash_id(doc),
        "version": doc["version"],
        "surface": surface,
        "shown_at": at(doc, seconds),
        **extra,
    }


async def send(
    client: httpx.AsyncClient, base_url: str, body: Any, content_type: str = "application/json"
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post(f"{base_url}/v1/receipts", content=raw, headers={"Content-Type": content_type})


async def reach_until(
    client: httpx.AsyncClient, service: Service, doc: dict[str, Any], done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET the flash's reach until ``done(figures)`` (a hub's receipts reach the others within a flush)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        response = await client.get(f"{service.base_url}/v1/flashes/{flash_id(doc)}/reach", headers=service.headers())
        assert response.status_code == 200, response.text
        figures: dict[str, Any] = response.json()
        if done(figures):
            return figures
        assert asyncio.get_running_loop().time() < deadline, figures
        await asyncio.sleep(0.05)


def row(figures: dict[str, Any], version: str, surface: str) -> dict[str, Any]:
    return next(r for r in figures["versions"] if r["version"] == version and r["surface"] == surface)


async def test_receipts_add_up_per_version_and_surface(svc: Service, client: httpx.AsyncClient) -> None:
    """JSON and beacon receipts, weighted by their sampling rate, give counts and quantiles within 1 %."""
    first = await publish(client, svc, "BREAKING: reach of a flash")
    ws_latencies = [0.1 * (i + 1) for i in range(10)]  # 0.1 … 1.0 s
    for seconds in ws_latencies:
        response = await send(client, svc.base_url, receipt(first, "ws", seconds))
        assert response.status_code == 204, response.text
        assert response.headers["access-control-allow-origin"] == "*"
    for _ in range(5):  # navigator.sendBeacon sends a string as text/plain; this reader's clock is an hour slow
        slow = at(first, -3600)
        beacon = {**receipt(first, "sse", 0), "shown_at": slow, "sent_at": slow, "rate": 0.1}
        response = await send(client, svc.base_url, beacon, "text/plain;charset=UTF-8")
        assert response.status_code == 204, response.text
    fixed = await client.patch(
        f"{svc.base_url}/v1/flashes/{flash_id(first)}",
        json={"headline": "BREAKING: reach, fixed"},
        headers=svc.headers(),
    )
    second = fixed.json()
    assert (await send(client, svc.base_url, receipt(second, "webpush", 0.5, rate=0.5))).status_code == 204

    figures = await reach_until(client, svc, first, lambda f: f["receipts"] == 16)
    ws = row(figures, "1", "ws")
    assert (ws["receipts"], ws["readers"]) == (10, 10)
    assert ws["p50"] == pytest.approx(0.5, rel=0.021) and ws["p90"] == pytest.approx(0.9, rel=0.021)
    sse = row(figures, "1", "sse")
    assert (sse["receipts"], sse["readers"]) == (5, 50)  # each sampled reader stands for ten
    # sent_at takes the clock's offset out: shown as it was sent, i.e. now, not an hour before the publish.
    assert 0 < sse["p50"] <= sse["p99"] < TIMEOUT
    assert (row(figures, "2", "webpush")["receipts"], row(figures, "2", "webpush")["readers"]) == (1, 2)
    assert figures["readers"] == 62 and figures["flash"] == flash_id(first)

    stats = await client.get(
        f"{svc.base_url}/v1/admin/stats", headers={"Authorization": f"Bearer {svc.env['ADMIN_TOKEN']}"}
    )
    hour = stats.json()["time_to_screen"]
    assert hour["window_seconds"] == 3600
    assert hour["surfaces"]["ws"]["receipts"] >= 10 and hour["surfaces"]["sse"]["readers"] >= 50
    metrics = (await client.get(f"{svc.base_url}/metrics")).text
    assert 'ticker_time_to_screen_seconds_count{surface="ws"}' in metrics


BAD: list[tuple[str, Callable[[dict[str, Any], dict[str, Any]], tuple[Any, str]], int]] = [
    ("not JSON", lambda d, w: (b"{flash", "application/json"), 400),
    ("not an object", lambda d, w: ([receipt(d, "ws", 1)], "application/json"), 422),
    (
        "missing field",
        lambda d, w: ({k: v for k, v in receipt(d, "ws", 1).items() if k != "surface"}, "text/plain"),
        422,
    ),
    ("unknown surface", lambda d, w: (receipt(d, "carrier-pigeon", 1), "application/json"), 422),
    ("extra field", lambda d, w: (receipt(d, "ws", 1, who="me"), "application/json"), 422),
    ("no offset", lambda d, w: ({**receipt(d, "ws", 1), "shown_at": "2030-01-01T00:00:00"}, "application/json"), 422),
    ("bad rate", lambda d, w: (receipt(d, "ws", 1, rate=0), "application/json"), 422),
    ("numeric version", lambda d, w: ({**receipt(d, "ws", 1), "version": 1}, "application/json"), 422),
    ("form body", lambda d, w: (b"flash=x", "application/x-www-form-urlencoded"), 415),
    ("too large", lambda d, w: (receipt(d, "ws", 1, flash="x" * 2000), "application/json"), 413),
    ("unknown flash", lambda d, w: ({**receipt(d, "ws", 1), "flash": "0000000000000000000"}, "application/json"), 404),
    ("unknown version", lambda d, w: ({**receipt(d, "ws", 1), "version": "9"}, "application/json"), 404),
    ("before the publish", lambda d, w: (receipt(d, "ws", -30), "application/json"), 422),
    ("in the future", lambda d, w: (receipt(d, "ws", 3600), "application/json"), 422),
    ("shown after sent", lambda d, w: (receipt(d, "ws", 1, sent_at=at(d, 0.5)), "application/json"), 422),
    ("a withdrawal", lambda d, w: (receipt(w, "ws", 1), "application/json"), 422),
]


async def test_bad_receipts_are_refused_and_never_counted(svc: Service, client: httpx.AsyncClient) -> None:
    """Each bad receipt is a 4xx problem (readable from any origin) and the flash's count stays at zero."""
    doc = await publish(client, svc, "BREAKING: nobody reports this one right")
    gone = await publish(client, svc, "BREAKING: withdrawn at once")
    withdrawn = (await client.delete(f"{svc.base_url}/v1/flashes/{flash_id(gone)}", headers=svc.headers())).json()
    for name, make, status in BAD:
        body, content_type = make(doc, withdrawn)
        response = await send(client, svc.base_url, body, content_type)
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.headers["access-control-allow-origin"] == "*", name
    for target in (doc, gone):
        figures = await reach_until(client, svc, target, lambda f: True)
        assert (figures["receipts"], figures["readers"], figures["versions"]) == (0, 0, [])


async def test_reach_is_for_editors(svc: Service, client: httpx.AsyncClient) -> None:
    doc = await publish(client, svc, "BREAKING: reach needs a token")
    url = f"{svc.base_url}/v1/flashes/{flash_id(doc)}/reach"
    assert (await client.get(url)).status_code == 401
    assert (
        await client.get(f"{svc.base_url}/v1/flashes/0000000000000000000/reach", headers=svc.headers())
    ).status_code == 404


async def test_receipts_are_rate_limited_per_address(svc: Service) -> None:
    """Past TICKER_RECEIPTS_PER_MINUTE from one address: 429 with Retry-After (another address is not affected)."""
    async with httpx.AsyncClient(timeout=TIMEOUT, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.3")) as own:
        doc = await publish(own, svc, "BREAKING: a flood of receipts")
        statuses = []
        for _ in range(2 * RATE_LIMIT + 1):  # a minute boundary may fall inside the loop, never two
            response = await send(own, svc.base_url, receipt(doc, "ws", 0.2))
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {204}, statuses
    async with httpx.AsyncClient(
        timeout=TIMEOUT, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.4")
    ) as other:
        assert (await send(other, svc.base_url, receipt(doc, "ws", 0.2))).status_code == 204


async def scrape(client: httpx.AsyncClient, service: Service) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in (await client.get(f"{service.base_url}/metrics")).text.splitlines():
        if line.startswith("ticker_canary"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_the_canary_reads_back_its_flash_and_no_reader_sees_it(svc: Service, client: httpx.AsyncClient) -> None:
    """Rounds succeed every second (latency exported, no failures) while a WS and an SSE reader, the public list and
    the reach API see nothing of the canary: the next thing those readers get is a real flash."""
    async with ws_reader(svc) as ws:
        last = (await client.get(f"{svc.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as sse_client,
            sse_client.stream("GET", f"{svc.base_url}/v1/events?last_event_id={last}") as sse,
        ):
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            start = (await scrape(client, svc)).get("ticker_canary_latency_seconds_count", 0)
            while True:
                metrics = await scrape(client, svc)
                if metrics.get("ticker_canary_latency_seconds_count", 0) >= start + 3:
                    break
                assert asyncio.get_running_loop().time() < deadline, metrics
                await asyncio.sleep(0.1)
            failures = {k: v for k, v in metrics.items() if k.startswith("ticker_canary_failures_total")}
            assert set(failures) == {
                f'ticker_canary_failures_total{{stage="{s}"}}' for s in ("publish", "connect", "timeout", "withdraw")
            }
            assert sum(failures.values()) == 0, failures
            assert metrics["ticker_canary_last_success_timestamp_seconds"] > 0
            mean = metrics["ticker_canary_latency_seconds_sum"] / metrics["ticker_canary_latency_seconds_count"]
            assert 0 < mean < 1
            rounds = metrics["ticker_canary_latency_seconds_count"]
            print(f"canary, {svc.mode}: {mean * 1000:.1f} ms mean over {rounds:.0f} rounds")  # for the notes

            real = await publish(client, svc, "BREAKING: after three canaries")
            assert (await next_ws_event(ws))["flash"]["uri"] == real["uri"]
            assert (await SSEReader(sse).next_event())["flash"]["uri"] == real["uri"]
    listed = (await client.get(f"{svc.base_url}/v1/flashes?limit=200")).json()["flashes"]
    assert not [f for f in listed if "canary" in f["uri"]]
    stats = await client.get(
        f"{svc.base_url}/v1/admin/stats", headers={"Authorization": f"Bearer {svc.env['ADMIN_TOKEN']}"}
    )
    assert "flash" not in stats.json()["events_last_minute"] or stats.json()["flashes_per_minute"] < 10


@pytest.mark.parametrize("svc", ["redis"], indirect=True)
async def test_hubs_share_one_sketch_in_redis(svc: Service, client: httpx.AsyncClient) -> None:
    """Receipts sent to two hubs are one flash's figures on either."""
    assert svc.directory is not None
    other, _ = start_hub(svc, svc.directory, "hub-reach")
    doc = await publish(client, svc, "BREAKING: seen through two hubs")
    for base, seconds in ((svc.base_url, 0.3), (other, 0.6), (other, 0.6)):
        assert (await send(client, base, receipt(doc, "ws", seconds))).status_code == 204
    figures = await reach_until(client, svc, doc, lambda f: f["receipts"] == 3)
    assert row(figures, "1", "ws")["p50"] == pytest.approx(0.6, rel=0.021)
    via_other = await client.get(f"{other}/v1/flashes/{flash_id(doc)}/reach", headers=svc.headers())
    assert via_other.json()["receipts"] == 3


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_the_python_client_can_send_receipts(svc: Service, client: httpx.AsyncClient, transport: str) -> None:
    """A reader built on ticker_client reports what it showed; a withdrawal is nothing to report."""
    since = (await client.get(f"{svc.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
    async with TickerClient(svc.base_url, transport=transport, last_event_id=since) as reader:  # type: ignore[arg-type]
        events = aiter(reader)
        doc = await publish(client, svc, f"BREAKING: a Python reader over {transport}")
        event = await asyncio.wait_for(anext(events), TIMEOUT)
        assert event.uri == doc["uri"]
        assert await reader.receipt(event, rate=0.5) is True
        gone = await client.delete(f"{svc.base_url}/v1/flashes/{flash_id(doc)}", headers=svc.headers())
        assert gone.status_code == 200
        withdrawal = await asyncio.wait_for(anext(events), TIMEOUT)
        assert withdrawal.type == "withdraw" and await reader.receipt(withdrawal) is False
    figures = await reach_until(client, svc, doc, lambda f: f["receipts"] == 1)
    assert row(figures, "1", transport)["readers"] == 2 and 0 <= figures["p50"] < TIMEOUT
