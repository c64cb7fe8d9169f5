"""Editor tokens in both modes: desks, the audit log, rotation with overlap, revocation everywhere, write limits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ..support.flashes import flash_body, flash_id
from ..support.processes import TIMEOUT, Service, ServiceFactory, run_ticker, start_hub

RATE = 5  # writes per token per minute in this module's services
FAILURES = 10  # refused tokens per address per minute


@pytest.fixture(scope="module", params=["embedded", "redis"])
def svc(request: pytest.FixtureRequest, service_factory: ServiceFactory) -> Iterator[Service]:
    """Both modes with small publish and failed-authentication allowances (the first is stopped before the second
    starts)."""
    service = service_factory(
        request.param,
        name=f"editors-{request.param}",
        TICKER_PUBLISH_RATE_PER_MINUTE=str(RATE),
        TICKER_FAILED_AUTH_PER_MINUTE=str(FAILURES),
    )
    yield service
    service.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def token(service: Service, name: str, *options: str) -> str:
    created = run_ticker(service.env, "token", "create", "--name", name, *options)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def post(client: httpx.AsyncClient, service: Service, tok: str, **overrides: Any) -> httpx.Response:
    body = flash_body("BREAKING: desk test", **overrides)
    return await client.post(f"{service.base_url}/v1/flashes", json=body, headers=bearer(tok))


async def audit_entries(client: httpx.AsyncClient, service: Service, admin: str) -> list[dict[str, Any]]:
    response = await client.get(f"{service.base_url}/v1/audit?limit=1000", headers=bearer(admin))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()["entries"]  # type: ignore[no-any-return]


async def test_desk_limits_languages_and_categories(svc: Service, client: httpx.AsyncClient) -> None:
    """A sports desk in en/ar publishes sports in en, en-GB and ar; other languages or categories get 403."""
    sports = await asyncio.to_thread(token, svc, unique("sports"), "--languages", "en,ar", "--categories", "sports")
    for language in ("en", "en-GB", "ar"):
        assert (await post(client, svc, sports, language=language, category="sports")).status_code == 201
    for overrides in ({"language": "fr", "category": "sports"}, {"language": "en", "category": "politics"}):
        refused = await post(client, svc, sports, **overrides)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "outside this desk" in refused.json()["detail"]


async def test_desk_applies_to_corrections_and_withdrawals(svc: Service, client: httpx.AsyncClient) -> None:
    """A desk may correct its own flashes but not move them off the desk, nor touch another desk's flash."""
    sports = await asyncio.to_thread(token, svc, unique("sports"), "--categories", "sports")
    own = (await post(client, svc, sports, category="sports")).json()
    url = f"{svc.base_url}/v1/flashes/{flash_id(own)}"
    moved = await client.patch(url, json={"category": "politics"}, headers=bearer(sports))
    assert moved.status_code == 403, moved.text
    fixed = await client.patch(url, json={"headline": "BREAKING: desk test, corrected"}, headers=bearer(sports))
    assert fixed.status_code == 200, fixed.text
    other = (await post(client, svc, svc.token, category="politics")).json()
    other_url = f"{svc.base_url}/v1/flashes/{flash_id(other)}"
    assert (await client.delete(other_url, headers=bearer(sports))).status_code == 403
    assert (await client.patch(other_url, json={"urgency": 2}, headers=bearer(sports))).status_code == 403
    assert (await client.get(other_url)).json()["version"] == "1"


async def test_audit_log_records_writes_and_refusals_for_admins_only(svc: Service, client: httpx.AsyncClient) -> None:
    """Publish, correct, withdraw and each refusal (401, 403) are in /v1/audit: who, what, when, from where."""
    name = unique("audited")
    editor = await asyncio.to_thread(token, svc, name, "--categories", "health")
    admin = await asyncio.to_thread(token, svc, unique("admin"), "--scopes", "admin")
    doc = (await post(client, svc, editor, category="health")).json()
    url = f"{svc.base_url}/v1/flashes/{flash_id(doc)}"
    assert (await client.patch(url, json={"urgency": 3}, headers=bearer(editor))).status_code == 200
    assert (await client.delete(url, headers=bearer(editor))).status_code == 200
    assert (await post(client, svc, editor, category="sports")).status_code == 403
    forged = "tkr_" + "A" * 32
    assert (await post(client, svc, forged)).status_code == 401
    assert (await client.get(f"{svc.base_url}/v1/audit", headers=bearer(editor))).status_code == 403
    assert (await client.get(f"{svc.base_url}/v1/audit")).status_code == 401

    entries = await audit_entries(client, svc, admin)
    mine = [e for e in entries if e["who"] == name]
    seen = [(e["action"], e["status"]) for e in reversed(mine)]
    assert seen == [("publish", 201), ("correct", 200), ("withdraw", 200), ("publish", 403), ("admin", 403)], seen
    assert all(e["flash"] == flash_id(doc) for e in mine[-3:])
    assert all(e["ip"] == "127.0.0.1" and e["time"].endswith("Z") for e in mine)
    assert any(e["status"] == 401 and e["who"] is None and e["action"] == "publish" for e in entries)
    assert forged not in str(entries)  # the audit never holds a secret


async def test_publishes_per_token_per_minute_get_429_with_retry_after(svc: Service, client: httpx.AsyncClient) -> None:
    """Past the token's writes per minute: 429 with Retry-After, audited; another token is not affected."""
    name = unique("busy")
    busy = await asyncio.to_thread(token, svc, name)
    statuses = [(await post(client, svc, busy)).status_code for _ in range(2 * RATE + 1)]
    assert 429 in statuses and statuses.count(201) <= 2 * RATE, statuses  # a window may turn over once
    limited = await post(client, svc, busy)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["content-type"] == "application/problem+json"
    other = await asyncio.to_thread(token, svc, unique("calm"))
    assert (await post(client, svc, other)).status_code == 201
    admin = await asyncio.to_thread(token, svc, unique("admin"), "--scopes", "admin")
    assert any(e["who"] == name and e["status"] == 429 for e in await audit_entries(client, svc, admin))


async def test_failed_attempts_per_address_get_429_and_do_not_flood_the_audit(svc: Service) -> None:
    """Past the refused tokens per minute from one address: 429 with Retry-After, one audit entry for the run;
    a valid token from that address and other addresses still get through."""
    source = "127.0.0.77"  # an address of its own: the other tests' refusals do not count here
    async with httpx.AsyncClient(timeout=TIMEOUT, transport=httpx.AsyncHTTPTransport(local_address=source)) as near:
        statuses = []
        for _ in range(2 * FAILURES + 1):
            statuses.append((await post(near, svc, "tkr_" + uuid.uuid4().hex)).status_code)
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {401}, statuses
        limited = await post(near, svc, "tkr_guess")
        assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
        assert (await post(near, svc, svc.token)).status_code == 201
    async with httpx.AsyncClient(timeout=TIMEOUT) as elsewhere:
        assert (await post(elsewhere, svc, "tkr_guess")).status_code == 401
        admin = await asyncio.to_thread(token, svc, unique("admin"), "--scopes", "admin")
        entries = [e for e in await audit_entries(elsewhere, svc, admin) if e["ip"] == source]
    assert [e["status"] for e in entries].count(429) == 1
    assert [e["status"] for e in entries].count(401) == len(statuses) - 1


async def test_rotation_keeps_the_old_token_for_the_overlap_only(svc: Service, client: httpx.AsyncClient) -> None:
    """After a rotation both tokens work; when the overlap ends only the new one does; desk and scopes stay."""
    name = unique("rotating")
    old = await asyncio.to_thread(token, svc, name, "--categories", "economy", "--scopes", "publish,admin")
    rotated = await asyncio.to_thread(run_ticker, svc.env, "token", "rotate", "--name", name, "--overlap-seconds", "3")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip().splitlines()[-1]
    assert new.startswith("tkr_") and new != old
    started = time.monotonic()
    assert (await post(client, svc, new, category="economy")).status_code == 201
    old_response = await post(client, svc, old, category="economy")
    if time.monotonic() - started < 3:  # (only meaningful inside the overlap)
        assert old_response.status_code == 201, old_response.text
    assert (await post(client, svc, new, category="sports")).status_code == 403  # the desk came along
    deadline = time.monotonic() + TIMEOUT
    audit_url = f"{svc.base_url}/v1/audit?limit=1"  # (reading the audit does not count against the write limit)
    while (await client.get(audit_url, headers=bearer(old))).status_code != 401:
        assert time.monotonic() < deadline, "the old token outlived its overlap"
        await asyncio.sleep(0.2)
    assert (await post(client, svc, new, category="economy")).status_code == 201
    missing = await asyncio.to_thread(run_ticker, svc.env, "token", "rotate", "--name", unique("nobody"))
    assert missing.returncode == 1


@pytest.fixture(scope="module")
def two_hubs(service_factory: ServiceFactory) -> tuple[Service, str]:
    service = service_factory("redis", name="revoke")
    assert service.directory is not None
    second, _ = start_hub(service, service.directory, "hub2")
    return service, second


async def test_revocation_is_effective_on_every_hub_within_5_seconds(
    two_hubs: tuple[Service, str], client: httpx.AsyncClient
) -> None:
    """A token revoked with the CLI is refused by both hubs of a distributed service within 5 s; the CLI's token
    changes are in the audit log."""
    service, second = two_hubs
    name = unique("leaked")
    leaked = await asyncio.to_thread(token, service, name)
    body = flash_body("BREAKING: before revocation")
    for base in (service.base_url, second):
        assert (await client.post(f"{base}/v1/flashes", json=body, headers=bearer(leaked))).status_code == 201
    revoked = await asyncio.to_thread(run_ticker, service.env, "token", "revoke", name)
    assert revoked.returncode == 0
    deadline = time.monotonic() + 5
    pending = {service.base_url, second}
    while pending:
        assert time.monotonic() < deadline, f"still accepted after 5 s by {pending}"
        for base in list(pending):
            response = await client.post(f"{base}/v1/flashes", json=body, headers=bearer(leaked))
            if response.status_code == 401:
                pending.discard(base)
        await asyncio.sleep(0.05)
    admin = await asyncio.to_thread(token, service, unique("admin"), "--scopes", "admin")
    changes = [e for e in await audit_entries(client, service, admin) if e["action"] == "token"]
    details = [e["detail"] for e in changes]
    assert f"revoke {name!r}" in details and any(d.startswith(f"create {name!r}: scopes ") for d in details)
    assert all(e["who"].startswith("cli:") and e["status"] == 200 for e in changes)
