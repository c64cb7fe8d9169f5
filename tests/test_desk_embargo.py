"""Embargo, on the real path in both modes: stored at once, seen by no reader, list or device before its instant,
then out as an ordinary flash within a second of it — also after the hub and worker were killed in between."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .support.flashes import flash_body, flash_id
from .support.processes import Service, wait_ready
from .support.readers import next_ws_event, sse_reader, ws_reader
from .support.schema import assert_ninjs


def instant(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def schedule(client: httpx.AsyncClient, service: Service, headline: str, seconds: float, **extra: Any) -> Any:
    body = flash_body(headline, embargo=instant(seconds), **extra)
    response = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=service.headers())
    assert response.status_code == 201, response.text
    return response.json()


async def test_an_embargoed_flash_is_stored_withheld_and_goes_out_at_its_instant(
    service: Service, client: httpx.AsyncClient
) -> None:
    """201 withheld at once; no list, no public GET, no reader (live or resuming) before; then a usable `flash`
    event within 1 s of the instant, on WebSocket and SSE, and in the list and the history after."""
    base = service.base_url
    before = (await client.get(f"{base}/v1/flashes?limit=1")).json()["last_event_id"]
    async with ws_reader(service, "lang=nl") as ws, sse_reader(service, "lang=nl") as sse:
        doc = await schedule(client, service, "Embargoed: results at noon", 3, language="nl")
        fid = flash_id(doc)
        assert_ninjs(doc)
        assert doc["pubStatus"] == "withheld" and doc["embargoedUntil"]
        assert (await client.get(f"{base}/v1/flashes/{fid}")).status_code == 404
        assert (await client.get(f"{base}/v1/flashes/{fid}", headers=service.headers())).json() == doc
        listed = (await client.get(f"{base}/v1/flashes?lang=nl")).json()["flashes"]
        assert fid not in [flash_id(d) for d in listed]
        assert (await client.get(f"{base}/v1/flashes?status=scheduled")).status_code == 401
        scheduled = (await client.get(f"{base}/v1/flashes?status=scheduled", headers=service.headers())).json()
        assert fid in [flash_id(d) for d in scheduled["flashes"]]
        assert {"flash": fid, "by": "tests", "embargoedUntil": doc["embargoedUntil"]} in scheduled["requests"]
        with pytest.raises(TimeoutError):
            await next_ws_event(ws, timeout=max(0.1, unix(doc["embargoedUntil"]) - time.time() - 0.3))
        event = await next_ws_event(ws, timeout=10)
        delay = time.time() - unix(doc["embargoedUntil"])
        sse_event = await sse.next_event(timeout=10)
    assert event["type"] == "flash" and flash_id(event["flash"]) == fid
    assert event["flash"]["pubStatus"] == "usable"
    assert event["flash"]["headlines"] == doc["headlines"]
    assert 0 <= delay < 1.0, f"released {delay:.3f} s after its embargo"
    assert (sse_event["event"], sse_event["id"]) == ("flash", event["event_id"])
    assert (await client.get(f"{base}/v1/flashes/{fid}")).json()["pubStatus"] == "usable"
    assert fid in [flash_id(d) for d in (await client.get(f"{base}/v1/flashes?lang=nl")).json()["flashes"]]
    scheduled = (await client.get(f"{base}/v1/flashes?status=scheduled", headers=service.headers())).json()
    assert fid not in [flash_id(d) for d in scheduled["flashes"]]
    # A reader resuming from before the POST gets the release only, never the withheld version.
    async with ws_reader(service, f"lang=nl&last_event_id={before}") as resumed:
        replayed = await next_ws_event(resumed)
    assert (replayed["type"], replayed["event_id"]) == ("flash", event["event_id"])


async def test_cancel_and_silent_change_before_the_instant(service: Service, client: httpx.AsyncClient) -> None:
    """DELETE before the instant: nothing is ever pushed. PATCH before it: no event; the changed flash goes out,
    at the changed instant."""
    base = service.base_url
    async with ws_reader(service, "lang=sv") as ws:
        canceled = await schedule(client, service, "Embargoed: never to be seen", 1.5, language="sv")
        changed = await schedule(client, service, "Embargoed: first wording", 1.5, language="sv")
        gone = await client.delete(f"{base}/v1/flashes/{flash_id(canceled)}", headers=service.headers())
        assert gone.status_code == 200 and gone.json()["pubStatus"] == "canceled"
        patch = {"headline": "Embargoed: final wording", "embargo": instant(2.5)}
        patched = await client.patch(f"{base}/v1/flashes/{flash_id(changed)}", json=patch, headers=service.headers())
        assert patched.status_code == 200, patched.text
        new = patched.json()
        assert (new["pubStatus"], new["version"], "genres" in new) == ("withheld", "2", False)
        for fid in (flash_id(canceled), flash_id(changed)):
            assert (await client.get(f"{base}/v1/flashes/{fid}")).status_code == 404
        assert (
            await client.get(f"{base}/v1/flashes/{flash_id(canceled)}", headers=service.headers())
        ).status_code == 404
        event = await next_ws_event(ws, timeout=10)
        delay = time.time() - unix(new["embargoedUntil"])
    assert event["type"] == "flash" and flash_id(event["flash"]) == flash_id(changed)
    assert event["flash"]["headlines"][0]["value"] == "Embargoed: final wording"
    assert 0 <= delay < 1.0, f"released {delay:.3f} s after its changed embargo"


@pytest.mark.parametrize(
    ("embargo", "message"),
    [
        (lambda: instant(-5), "future"),
        (lambda: instant(8 * 24 * 3600), "7 days"),
        (lambda: "2030-01-01T12:00:00", "time zone"),
        (lambda: "tomorrow", "datetime"),
    ],
)
async def test_an_embargo_in_the_past_too_far_or_without_zone_is_422(
    service: Service, client: httpx.AsyncClient, embargo: Any, message: str
) -> None:
    response = await client.post(
        f"{service.base_url}/v1/flashes", json=flash_body(embargo=embargo()), headers=service.headers()
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors[0]["field"] == "embargo" and message in errors[0]["message"]


async def test_only_a_scheduled_flash_takes_an_embargo_change(service: Service, client: httpx.AsyncClient) -> None:
    doc = (
        await client.post(f"{service.base_url}/v1/flashes", json=flash_body("published"), headers=service.headers())
    ).json()
    response = await client.patch(
        f"{service.base_url}/v1/flashes/{flash_id(doc)}", json={"embargo": instant(60)}, headers=service.headers()
    )
    assert response.status_code == 409, response.text


def _restart(service: Service, *, kill: bool) -> None:
    """Kill (SIGKILL) or stop every process of the service, then start them again; wait for the hub."""
    for proc in service.processes:
        assert proc.proc is not None
        if kill:
            proc.proc.kill()
            proc.proc.wait()
        else:
            proc.stop()
    for proc in service.processes:
        proc.start()
    wait_ready(service.base_url, service.processes[0])


async def test_the_embargo_survives_killing_the_hub_and_worker(service: Service, client: httpx.AsyncClient) -> None:
    """Killed after the POST and started again: the flash still goes out within 1 s of its instant."""
    doc = await schedule(client, service, "Embargoed: survives a restart", 10, language="pt")
    _restart(service, kill=True)
    if service.mode == "redis":
        assert service.redis is not None
        with service.redis.client() as redis:  # the new worker polls its queue before the instant
            deadline = time.monotonic() + 10
            while not redis.exists("arq:queue:health-check") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    assert time.time() < unix(doc["embargoedUntil"]) - 0.5, "the restart took longer than the embargo"
    async with ws_reader(service, "lang=pt", from_now=False) as ws:
        event = await next_ws_event(ws, timeout=15)
        delay = time.time() - unix(doc["embargoedUntil"])
    assert event["type"] == "flash" and flash_id(event["flash"]) == flash_id(doc)
    assert 0 <= delay < 1.0, f"released {delay:.3f} s after its embargo"


async def test_embargo_release_delay_over_50_flashes(service: Service, client: httpx.AsyncClient) -> None:
    """The closing note's figure: delay from the embargo instant to a WebSocket reader, p50 and p99 of 50."""
    async with ws_reader(service, "lang=fi") as ws:
        t0 = time.time() + 4
        body = [flash_body(f"Embargoed {i}", language="fi") for i in range(50)]
        docs = []
        for i, b in enumerate(body):
            at = datetime.fromtimestamp(t0 + i * 0.05, UTC).isoformat(timespec="milliseconds")
            b["embargo"] = at.replace("+00:00", "Z")
            response = await client.post(f"{service.base_url}/v1/flashes", json=b, headers=service.headers())
            assert response.status_code == 201, response.text
            docs.append(response.json())
        due = {flash_id(d): unix(d["embargoedUntil"]) for d in docs}
        delays: list[float] = []
        while len(delays) < 50:
            event = await next_ws_event(ws, timeout=15)
            delays.append(time.time() - due[flash_id(event["flash"])])
    delays.sort()
    p50, p99 = delays[24], delays[48]
    print(f"\n{service.mode}: embargo release delay over 50 flashes: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
    assert min(delays) >= 0
    assert p99 < 1.0


async def test_a_repeated_idempotency_key_schedules_once(service: Service, client: httpx.AsyncClient) -> None:
    body = flash_body("Embargoed once", embargo=instant(3600))
    headers = service.headers(**{"Idempotency-Key": f"embargo-{time.time()}"})
    first = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=headers)
    again = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    scheduled = (await client.get(f"{service.base_url}/v1/flashes?status=scheduled", headers=service.headers())).json()
    assert [d["headlines"][0]["value"] for d in scheduled["flashes"]].count("Embargoed once") == 1


async def test_the_number_of_waiting_flashes_is_capped(service_factory: Any, client: httpx.AsyncClient) -> None:
    capped = service_factory(name="capped", TICKER_WITHHELD_MAX_FLASHES="2")
    url = f"{capped.base_url}/v1/flashes"
    for i in range(2):
        response = await client.post(url, json=flash_body(f"wait {i}", embargo=instant(600)), headers=capped.headers())
        assert response.status_code == 201, response.text
    refused = await client.post(url, json=flash_body("one too many", embargo=instant(600)), headers=capped.headers())
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert (await client.post(url, json=flash_body("not waiting"), headers=capped.headers())).status_code == 201
