"""Two-person FLASH on the real path in both modes: with TICKER_FLASH_APPROVAL=1 (or a token made
``--needs-approval``) an urgency-1 flash waits (202) until another editor with the ``approve`` scope approves it;
the same editor cannot; a rejected one is never published. Audited with both names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from .support.flashes import flash_body, flash_id, publish
from .support.processes import Service, ServiceFactory, create_token, run_ticker
from .support.readers import next_ws_event, ws_reader


@pytest.fixture(scope="module", params=["embedded", "redis"])
def desk(request: pytest.FixtureRequest, service_factory: ServiceFactory) -> Iterator[Service]:
    svc = service_factory(request.param, name=f"approval-{request.param}", TICKER_FLASH_APPROVAL="1")
    yield svc
    svc.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ask(client: httpx.AsyncClient, service: Service, headline: str, token: str = "", **extra: Any) -> Any:
    headers = bearer(token) if token else service.headers()
    body = flash_body(headline, urgency=1, **extra)
    response = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response


async def test_a_flash_waits_for_a_second_editor_then_goes_out(desk: Service, client: httpx.AsyncClient) -> None:
    base = desk.base_url
    chief = create_token(desk.env, "chief", "publish", "approve")
    async with ws_reader(desk, "lang=cs") as ws:
        response = await ask(client, desk, "FLASH: awaiting sign-off", language="cs")
        doc = response.json()
        fid = flash_id(doc)
        assert response.headers["location"] == f"/v1/flashes/{fid}"
        assert doc["pubStatus"] == "withheld" and "approval" in doc["edNote"]
        assert (await client.get(f"{base}/v1/flashes/{fid}")).status_code == 404
        assert fid not in [flash_id(d) for d in (await client.get(f"{base}/v1/flashes?lang=cs")).json()["flashes"]]
        pending = (await client.get(f"{base}/v1/flashes?status=pending", headers=bearer(chief))).json()
        assert {"flash": fid, "by": "tests", "embargoedUntil": None} in pending["requests"]
        # The editor who asked has no approve scope; one who has it but asked is refused too (below).
        assert (await client.post(f"{base}/v1/flashes/{fid}/approve", headers=desk.headers())).status_code == 403
        approved = await client.post(f"{base}/v1/flashes/{fid}/approve", headers=bearer(chief))
        assert approved.status_code == 200, approved.text
        event = await next_ws_event(ws)
    assert (event["type"], flash_id(event["flash"]), event["flash"]["pubStatus"]) == ("flash", fid, "usable")
    assert event["flash"]["urgency"] == 1 and "edNote" not in event["flash"]
    assert event["flash"]["headlines"][0]["value"] == "FLASH: awaiting sign-off"
    assert approved.json() == event["flash"]
    assert (await client.get(f"{base}/v1/flashes/{fid}")).json()["pubStatus"] == "usable"
    pending = (await client.get(f"{base}/v1/flashes?status=pending", headers=bearer(chief))).json()
    assert fid not in [r["flash"] for r in pending["requests"]]
    assert (await client.post(f"{base}/v1/flashes/{fid}/approve", headers=bearer(chief))).status_code == 409
    audit = create_token(desk.env, "auditor", "admin")
    entries = (await client.get(f"{base}/v1/audit?limit=50", headers=bearer(audit))).json()["entries"]
    mine = [e for e in entries if e["flash"] == fid]
    assert any(e["action"] == "publish" and e["status"] == 202 and e["who"] == "tests" for e in mine)
    approval = next(e for e in mine if e["action"] == "approve" and e["status"] == 200)
    assert approval["who"] == "chief" and "'tests'" in approval["detail"] and "'chief'" in approval["detail"]


async def test_the_same_editor_cannot_approve_and_a_rejected_flash_never_goes_out(
    desk: Service, client: httpx.AsyncClient
) -> None:
    base = desk.base_url
    both = create_token(desk.env, "both-hats", "publish", "approve")
    chief = create_token(desk.env, "chief2", "approve")
    async with ws_reader(desk, "lang=hu") as ws:
        own = (await ask(client, desk, "FLASH: self-approved?", both, language="hu")).json()
        refused = await client.post(f"{base}/v1/flashes/{flash_id(own)}/approve", headers=bearer(both))
        assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
        rejected = await client.post(f"{base}/v1/flashes/{flash_id(own)}/reject", headers=bearer(chief))
        assert rejected.status_code == 200 and rejected.json()["pubStatus"] == "canceled"
        assert (await client.get(f"{base}/v1/flashes/{flash_id(own)}", headers=bearer(chief))).status_code == 404
        again = await client.post(f"{base}/v1/flashes/{flash_id(own)}/approve", headers=bearer(chief))
        assert again.status_code == 404
        marker = await publish(client, desk, "Not a FLASH: published at once", language="hu", urgency=2)
        first = await next_ws_event(ws)
    assert flash_id(first["flash"]) == flash_id(marker), "the rejected FLASH reached a reader"
    audit = create_token(desk.env, "auditor2", "admin")
    entries = (await client.get(f"{base}/v1/audit?limit=50", headers=bearer(audit))).json()["entries"]
    mine = [e for e in entries if e["flash"] == flash_id(own)]
    assert any(e["action"] == "approve" and e["status"] == 403 and e["who"] == "both-hats" for e in mine)
    rejection = next(e for e in mine if e["action"] == "reject" and e["status"] == 200)
    assert rejection["who"] == "chief2" and "'both-hats'" in rejection["detail"]


async def test_an_approved_flash_with_an_embargo_waits_for_it(desk: Service, client: httpx.AsyncClient) -> None:
    chief = create_token(desk.env, "chief3", "approve")
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat(timespec="milliseconds")
    async with ws_reader(desk, "lang=sk") as ws:
        doc = (await ask(client, desk, "FLASH: approved, embargoed", language="sk", embargo=at)).json()
        approved = await client.post(f"{desk.base_url}/v1/flashes/{flash_id(doc)}/approve", headers=bearer(chief))
        assert approved.status_code == 200 and approved.json()["pubStatus"] == "withheld"
        scheduled = (await client.get(f"{desk.base_url}/v1/flashes?status=scheduled", headers=bearer(chief))).json()
        assert flash_id(doc) in [r["flash"] for r in scheduled["requests"]]
        event = await next_ws_event(ws, timeout=10)
    assert event["type"] == "flash" and flash_id(event["flash"]) == flash_id(doc)
    assert datetime.now(UTC) >= datetime.fromisoformat(at)


async def test_a_needs_approval_token_on_a_desk_without_the_setting(
    service: Service, client: httpx.AsyncClient
) -> None:
    """Per token: `ticker token create --needs-approval` — its FLASHes wait, other tokens' do not."""
    made = run_ticker(service.env, "token", "create", "--name", "junior", "--needs-approval")
    assert made.returncode == 0, made.stderr
    junior = made.stdout.strip().splitlines()[-1]
    response = await ask(client, service, "FLASH: from the junior desk", junior)
    assert response.json()["pubStatus"] == "withheld"
    low = await client.post(
        f"{service.base_url}/v1/flashes", json=flash_body("urgency 3", urgency=3), headers=bearer(junior)
    )
    assert low.status_code == 201
    assert (await publish(client, service, "FLASH from a senior token"))["pubStatus"] == "usable"


async def test_a_repeated_idempotency_key_asks_once(desk: Service, client: httpx.AsyncClient) -> None:
    headers = desk.headers(**{"Idempotency-Key": "flash-ask-once"})
    body = flash_body("FLASH: asked once", urgency=1)
    first = await client.post(f"{desk.base_url}/v1/flashes", json=body, headers=headers)
    again = await client.post(f"{desk.base_url}/v1/flashes", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    pending = (await client.get(f"{desk.base_url}/v1/flashes?status=pending", headers=desk.headers())).json()
    assert [r["flash"] for r in pending["requests"]].count(flash_id(first.json())) == 1
