"""HOLD and release on the real path in both modes: readers (live and resuming) get `hold`, the public list and
GET drop the flash, a correction while held is silent, the release is an `update`, a held flash can be withdrawn."""

from __future__ import annotations

import httpx
import pytest

from .support.flashes import flash_body, flash_id, publish
from .support.processes import Service, ServiceFactory, create_token
from .support.readers import next_ws_event, sse_reader, ws_reader


async def _post(client: httpx.AsyncClient, service: Service, fid: str, verb: str, token: str = "") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else service.headers()
    return await client.post(f"{service.base_url}/v1/flashes/{fid}/{verb}", headers=headers)


async def test_hold_then_release_reaches_every_reader_and_the_list(service: Service, client: httpx.AsyncClient) -> None:
    base = service.base_url
    before = (await client.get(f"{base}/v1/flashes?limit=1")).json()["last_event_id"]
    async with ws_reader(service, "lang=it") as ws, sse_reader(service, "lang=it") as sse:
        doc = await publish(client, service, "Held: figures being checked", language="it")
        fid = flash_id(doc)
        assert (await next_ws_event(ws))["type"] == "flash"
        assert (await sse.next_event())["event"] == "flash"

        held = await _post(client, service, fid, "hold")
        assert held.status_code == 200, held.text
        assert (held.json()["pubStatus"], held.json()["version"]) == ("withheld", "2")
        hold_ws = await next_ws_event(ws)
        hold_sse = await sse.next_event()
        assert (hold_ws["type"], hold_ws["flash"]["pubStatus"]) == ("hold", "withheld")
        assert (hold_sse["event"], hold_sse["id"]) == ("hold", hold_ws["event_id"])
        assert fid not in [flash_id(d) for d in (await client.get(f"{base}/v1/flashes?lang=it")).json()["flashes"]]
        assert (await client.get(f"{base}/v1/flashes/{fid}")).status_code == 404
        assert (await client.get(f"{base}/v1/flashes/{fid}", headers=service.headers())).status_code == 200
        assert (await _post(client, service, fid, "hold")).json()["version"] == "2"  # holding again: no change

        # A correction while held goes to no reader until the release, which carries it.
        fixed = await client.patch(
            f"{base}/v1/flashes/{fid}", json={"headline": "Held: figures corrected"}, headers=service.headers()
        )
        assert fixed.status_code == 200 and fixed.json()["pubStatus"] == "withheld"
        released = await _post(client, service, fid, "release")
        assert released.status_code == 200 and released.json()["pubStatus"] == "usable"
        update = await next_ws_event(ws)  # the next event: nothing came for the correction
        assert (await sse.next_event())["event"] == "update"
    assert update["type"] == "update" and update["flash"]["version"] == "4"
    assert update["flash"]["headlines"][0]["value"] == "Held: figures corrected"
    assert "edNote" in update["flash"] and update["flash"]["edNote"].startswith("Corrected")
    assert fid in [flash_id(d) for d in (await client.get(f"{base}/v1/flashes?lang=it")).json()["flashes"]]
    # Resuming from before it all: flash, hold, update, in order; never the silent version.
    async with ws_reader(service, f"lang=it&last_event_id={before}") as resumed:
        replay = [await next_ws_event(resumed) for _ in range(3)]
    assert [(e["type"], e["flash"]["version"]) for e in replay] == [("flash", "1"), ("hold", "2"), ("update", "4")]
    assert replay[2]["event_id"] == update["event_id"]


async def test_a_held_flash_can_be_withdrawn(service: Service, client: httpx.AsyncClient) -> None:
    doc = await publish(client, service, "Held, then killed", language="ro")
    fid = flash_id(doc)
    async with ws_reader(service, "lang=ro") as ws:
        assert (await _post(client, service, fid, "hold")).status_code == 200
        assert (await next_ws_event(ws))["type"] == "hold"
        gone = await client.delete(f"{service.base_url}/v1/flashes/{fid}", headers=service.headers())
        assert gone.status_code == 200 and gone.json()["pubStatus"] == "canceled"
        assert (await next_ws_event(ws))["type"] == "withdraw"
    assert (await _post(client, service, fid, "release")).status_code == 409


async def test_hold_needs_the_withdraw_scope_and_a_published_flash(service: Service, client: httpx.AsyncClient) -> None:
    doc = await publish(client, service, "Not to be held by a publisher")
    publisher = create_token(service.env, "publisher-only", "publish")
    refused = await _post(client, service, flash_id(doc), "hold", publisher)
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert (await client.post(f"{service.base_url}/v1/flashes/{flash_id(doc)}/hold")).status_code == 401
    assert (await _post(client, service, "nosuchflash", "hold")).status_code == 404
    body = flash_body("Embargoed, not yet out", embargo="2099-01-01T00:00:00Z")
    body["embargo"] = (await _soon()).replace("+00:00", "Z")
    scheduled = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=service.headers())
    assert scheduled.status_code == 201, scheduled.text
    assert (await _post(client, service, flash_id(scheduled.json()), "hold")).status_code == 409
    await client.delete(f"{service.base_url}/v1/flashes/{flash_id(scheduled.json())}", headers=service.headers())
    audit = create_token(service.env, "auditor", "admin")
    entries = (
        await client.get(f"{service.base_url}/v1/audit?limit=50", headers={"Authorization": f"Bearer {audit}"})
    ).json()["entries"]
    assert any(e["action"] == "hold" and e["status"] == 403 and e["who"] == "publisher-only" for e in entries)


async def _soon() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize("verb", ["hold", "release"])
async def test_hold_and_release_are_audited(service: Service, client: httpx.AsyncClient, verb: str) -> None:
    doc = await publish(client, service, f"Audited {verb}")
    fid = flash_id(doc)
    assert (await _post(client, service, fid, "hold")).status_code == 200
    if verb == "release":
        assert (await _post(client, service, fid, "release")).status_code == 200
    audit = create_token(service.env, "auditor2", "admin")
    entries = (
        await client.get(f"{service.base_url}/v1/audit?limit=20", headers={"Authorization": f"Bearer {audit}"})
    ).json()["entries"]
    assert any(e["action"] == verb and e["status"] == 200 and e["flash"] == fid for e in entries)


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_the_python_client_yields_hold_and_release(
    service: Service, client: httpx.AsyncClient, transport: str
) -> None:
    import asyncio

    from ticker_client import Event, TickerClient

    since = (await client.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
    async with TickerClient(service.base_url, lang="lt", transport=transport, last_event_id=since) as reader:
        events: list[Event] = []

        async def take() -> None:
            async for event in reader:
                events.append(event)
                if len(events) == 3:
                    return

        task = asyncio.create_task(take())
        doc = await publish(client, service, "client: held", language="lt")
        assert (await _post(client, service, flash_id(doc), "hold")).status_code == 200
        assert (await _post(client, service, flash_id(doc), "release")).status_code == 200
        await asyncio.wait_for(task, 15)
    assert [(e.type, e.held) for e in events] == [("flash", False), ("hold", True), ("update", False)]


async def test_the_asgi_endpoints_carry_hold_too(service_factory: ServiceFactory, client: httpx.AsyncClient) -> None:
    """Under plain uvicorn (the portable ASGI WebSocket and SSE endpoints): the same `hold` event."""
    asgi = service_factory("asgi", name="hold-asgi")
    async with ws_reader(asgi, "lang=et") as ws, sse_reader(asgi, "lang=et") as sse:
        doc = await publish(client, asgi, "ASGI: held", language="et")
        assert (await _post(client, asgi, flash_id(doc), "hold")).status_code == 200
        ws_events = [await next_ws_event(ws) for _ in range(2)]
        sse_events = [await sse.next_event() for _ in range(2)]
    assert [e["type"] for e in ws_events] == ["flash", "hold"]
    assert [e["event"] for e in sse_events] == ["flash", "hold"]
    assert ws_events[1]["flash"]["pubStatus"] == "withheld"
