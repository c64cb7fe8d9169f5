"""The editors' API against a real server, in both modes: publish, correct, withdraw, list, and every refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from .support.flashes import flash_body, flash_id, publish
from .support.processes import Service
from .support.readers import next_ws_event, ws_reader
from .support.schema import assert_ninjs


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def last_event_id(client: httpx.AsyncClient, service: Service) -> str:
    response = await client.get(f"{service.base_url}/v1/flashes")
    return str(response.json()["last_event_id"])


async def test_publish_returns_the_ninjs_flash_with_its_location(service: Service, client: httpx.AsyncClient) -> None:
    """A 201 carries the ninjs document itself, and Location names the id that ends its uri."""
    body = flash_body(
        "BREAKING: Parliament dissolved",
        url="https://news.example/story/1",
        source="Wire desk",
        regions=["europe", "mena"],
        expires="2099-01-01T00:00:00Z",
    )
    response = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=service.headers())
    assert response.status_code == 201, response.text
    doc = response.json()
    assert_ninjs(doc)
    fid = flash_id(doc)
    assert response.headers["location"] == f"/v1/flashes/{fid}"
    assert doc["headlines"] == [{"role": "main", "contentType": "text/plain", "value": body["headline"]}]
    assert (doc["version"], doc["pubStatus"], doc["urgency"], doc["language"]) == ("1", "usable", 1, "en")
    assert [s["literal"] for s in doc["subjects"]] == ["politics"]
    assert [p["literal"] for p in doc["places"]] == ["europe", "mena"]
    assert doc["associations"] == [{"name": "story", "rel": "story", "uri": "https://news.example/story/1"}]
    assert doc["infoSources"][0]["name"] == "Wire desk"
    assert doc["expires"] == "2099-01-01T00:00:00Z"
    fetched = await client.get(f"{service.base_url}/v1/flashes/{fid}")
    assert fetched.json() == doc


async def test_missing_or_unknown_token_is_401(service: Service, client: httpx.AsyncClient) -> None:
    """Publishing without a token, or with one that was never issued, is refused."""
    url = f"{service.base_url}/v1/flashes"
    for headers in ({}, {"Authorization": "Bearer tkr_not-a-real-token"}, {"Authorization": "Basic abc"}):
        response = await client.post(url, json=flash_body(), headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_invalid_fields_are_422_naming_each_field(service: Service, client: httpx.AsyncClient) -> None:
    """Every bad field is named in the problem body, not just the first."""
    body = {
        "headline": "  ",
        "language": "not a tag",
        "urgency": 11,
        "category": "gossip",
        "regions": ["mars"],
        "url": "javascript:alert(1)",
    }
    response = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=service.headers())
    problem = assert_problem(response, 422)
    fields = {e["field"] for e in problem["errors"]}
    assert fields == {"headline", "language", "urgency", "category", "regions", "url"}


@pytest.mark.parametrize(
    ("headline", "reason"),
    [("BREAKING:\nsecond line", "control"), ("nul\x00here", "control"), ("x" * 281, "280"), ("", "empty")],
)
async def test_bad_headlines_are_422(service: Service, client: httpx.AsyncClient, headline: str, reason: str) -> None:
    """Headlines are one line of 1–280 characters with no control characters."""
    response = await client.post(f"{service.base_url}/v1/flashes", json=flash_body(headline), headers=service.headers())
    problem = assert_problem(response, 422)
    assert problem["errors"][0]["field"] == "headline"
    assert reason in problem["errors"][0]["message"]


async def test_headline_is_trimmed_and_280_characters_is_accepted(service: Service, client: httpx.AsyncClient) -> None:
    """The limit counts characters after trimming, in any script."""
    headline = "ع" * 280
    doc = await publish(client, service, f"  {headline}  ", language="ar")
    assert doc["headlines"][0]["value"] == headline


async def test_unknown_fields_and_non_objects_are_422(service: Service, client: httpx.AsyncClient) -> None:
    url = f"{service.base_url}/v1/flashes"
    response = await client.post(url, json=flash_body(colour="red"), headers=service.headers())
    assert {e["field"] for e in assert_problem(response, 422)["errors"]} == {"colour"}
    assert_problem(await client.post(url, json=[1, 2], headers=service.headers()), 422)


async def test_malformed_json_is_400(service: Service, client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{service.base_url}/v1/flashes",
        content=b'{"headline": ',
        headers=service.headers(**{"Content-Type": "application/json"}),
    )
    assert "JSON" in assert_problem(response, 400)["detail"]


async def test_wrong_content_type_is_415(service: Service, client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{service.base_url}/v1/flashes",
        content=b"headline=x",
        headers=service.headers(**{"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert_problem(response, 415)


async def test_oversized_body_is_413_with_or_without_content_length(
    service: Service, client: httpx.AsyncClient
) -> None:
    """The 16 KiB limit holds for a declared length and for a chunked body that never declares one."""
    big = flash_body(source="s" * 20_000)
    url = f"{service.base_url}/v1/flashes"
    assert_problem(await client.post(url, json=big, headers=service.headers()), 413)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"headline": "x", "source": "'
        for _ in range(40):
            yield b"s" * 1024
        yield b'"}'

    response = await client.post(url, content=chunks(), headers=service.headers(**{"Content-Type": "application/json"}))
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


async def test_failed_requests_leave_no_trace(service: Service, client: httpx.AsyncClient) -> None:
    """Refused requests add nothing to the history and push nothing to readers."""
    before = await last_event_id(client, service)
    url = f"{service.base_url}/v1/flashes"
    async with ws_reader(service) as ws:
        await client.post(url, json=flash_body())  # 401
        await client.post(url, json=flash_body(urgency=0), headers=service.headers())  # 422
        await client.post(url, json=flash_body(source="s" * 20_000), headers=service.headers())  # 413
        await client.post(url, content=b"{", headers=service.headers(**{"Content-Type": "application/json"}))
        assert await last_event_id(client, service) == before
        good = await publish(client, service, "BREAKING: the only one")
        event = await next_ws_event(ws)
    assert event["flash"]["uri"] == good["uri"]


async def test_idempotent_repost_returns_the_first_flash_and_pushes_nothing(
    service: Service, client: httpx.AsyncClient
) -> None:
    """The same Idempotency-Key and body give the first flash back; readers see it once."""
    url = f"{service.base_url}/v1/flashes"
    headers = service.headers(**{"Idempotency-Key": "desk-42-attempt"})
    body = flash_body("BREAKING: retried publish")
    async with ws_reader(service) as ws:
        first = await client.post(url, json=body, headers=headers)
        assert first.status_code == 201
        assert (await next_ws_event(ws))["flash"]["uri"] == first.json()["uri"]
        before = await last_event_id(client, service)
        again = await client.post(url, json=body, headers=headers)
        assert again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert await last_event_id(client, service) == before
        marker = await publish(client, service, "BREAKING: after the retry")
        assert (await next_ws_event(ws))["flash"]["uri"] == marker["uri"]


async def test_idempotency_key_with_another_body_is_422(service: Service, client: httpx.AsyncClient) -> None:
    url = f"{service.base_url}/v1/flashes"
    headers = service.headers(**{"Idempotency-Key": "reused-key"})
    assert (await client.post(url, json=flash_body("one"), headers=headers)).status_code == 201
    problem = assert_problem(await client.post(url, json=flash_body("two"), headers=headers), 422)
    assert problem["errors"][0]["field"] == "Idempotency-Key"


async def test_correction_is_next_version_and_reaches_readers_as_update(
    service: Service, client: httpx.AsyncClient
) -> None:
    doc = await publish(client, service, "BREAKING: 10 dead")
    fid = flash_id(doc)
    async with ws_reader(service) as ws:
        response = await client.patch(
            f"{service.base_url}/v1/flashes/{fid}", json={"headline": "BREAKING: 12 dead"}, headers=service.headers()
        )
        assert response.status_code == 200, response.text
        corrected = response.json()
        event = await next_ws_event(ws)
    assert_ninjs(corrected)
    assert corrected["uri"] == doc["uri"]
    assert corrected["version"] == "2"
    assert corrected["firstCreated"] == doc["firstCreated"]
    assert corrected["headlines"][0]["value"] == "BREAKING: 12 dead"
    assert {"name": "Correction", "literal": "correction"} in corrected["genres"]
    assert event["type"] == "update"
    assert event["flash"] == corrected


@pytest.mark.parametrize("field", ["headline", "language", "urgency", "category"])
async def test_a_correction_cannot_null_a_field_every_flash_has(
    service: Service, client: httpx.AsyncClient, field: str
) -> None:
    """A correction is a JSON merge patch: ``null`` would remove the field, which a flash must have: 422 naming it,
    and the flash is as it was (this was a 500 for category, and a 200 with a null headline)."""
    doc = await publish(client, service, "BREAKING: nulls")
    url = f"{service.base_url}/v1/flashes/{flash_id(doc)}"
    body = assert_problem(await client.patch(url, json={field: None}, headers=service.headers()), 422)
    assert [e["field"] for e in body["errors"]] == [field]
    assert (await client.get(url)).json() == doc


async def test_a_correction_s_null_removes_an_optional_field(service: Service, client: httpx.AsyncClient) -> None:
    """``null`` removes regions, the story link, the source and the expiry; the result is still valid ninjs."""
    extra = {"regions": ["europe"], "url": "https://news.example/story", "source": "Reuters"}
    doc = await publish(client, service, "BREAKING: optional fields", **extra)
    assert doc["places"] and doc["associations"] and doc["infoSources"]
    url = f"{service.base_url}/v1/flashes/{flash_id(doc)}"
    nulls = {"regions": None, "url": None, "source": None, "expires": None}
    response = await client.patch(url, json=nulls, headers=service.headers())
    assert response.status_code == 200, response.text
    corrected = response.json()
    assert_ninjs(corrected)
    assert corrected["places"] == []
    assert "associations" not in corrected and "infoSources" not in corrected and "expires" not in corrected
    assert corrected["headlines"] == doc["headlines"] and corrected["version"] == "2"


async def test_withdraw_cancels_pushes_once_and_blocks_corrections(service: Service, client: httpx.AsyncClient) -> None:
    doc = await publish(client, service, "BREAKING: wrong story")
    url = f"{service.base_url}/v1/flashes/{flash_id(doc)}"
    async with ws_reader(service) as ws:
        response = await client.delete(url, headers=service.headers())
        assert response.status_code == 200
        withdrawn = response.json()
        event = await next_ws_event(ws)
        assert event["type"] == "withdraw"
        assert event["flash"]["pubStatus"] == "canceled"
        assert_ninjs(withdrawn)
        before = await last_event_id(client, service)
        again = await client.delete(url, headers=service.headers())
        assert again.status_code == 200
        assert again.json() == withdrawn
        assert await last_event_id(client, service) == before
        assert_problem(await client.patch(url, json={"headline": "fixed"}, headers=service.headers()), 409)
        marker = await publish(client, service, "BREAKING: next")
        assert (await next_ws_event(ws))["flash"]["uri"] == marker["uri"]


async def test_unknown_flash_is_404(service: Service, client: httpx.AsyncClient) -> None:
    url = f"{service.base_url}/v1/flashes/doesnotexist"
    assert_problem(await client.get(url), 404)
    assert_problem(await client.patch(url, json={"headline": "x"}, headers=service.headers()), 404)
    assert_problem(await client.delete(url, headers=service.headers()), 404)


async def test_corrections_and_withdrawals_need_a_token(service: Service, client: httpx.AsyncClient) -> None:
    doc = await publish(client, service)
    url = f"{service.base_url}/v1/flashes/{flash_id(doc)}"
    assert_problem(await client.patch(url, json={"headline": "x"}), 401)
    assert_problem(await client.delete(url), 401)
    assert (await client.get(url)).json()["pubStatus"] == "usable"


async def test_list_is_current_state_newest_first_with_filters(service: Service, client: httpx.AsyncClient) -> None:
    """GET /v1/flashes: latest version of each, withdrawn ones left out, newest first, filtered, limited."""
    a = await publish(client, service, "list: a", language="es", category="sports", regions=["latin-america"])
    b = await publish(client, service, "list: b", language="es-MX", category="sports", urgency=4)
    c = await publish(client, service, "list: c", language="es", category="economy")
    await client.patch(
        f"{service.base_url}/v1/flashes/{flash_id(a)}", json={"headline": "list: a2"}, headers=service.headers()
    )
    await client.delete(f"{service.base_url}/v1/flashes/{flash_id(c)}", headers=service.headers())

    async def headlines(query: str) -> list[str]:
        response = await client.get(f"{service.base_url}/v1/flashes?{query}")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        for doc in body["flashes"]:
            assert_ninjs(doc)
        return [doc["headlines"][0]["value"] for doc in body["flashes"]]

    assert await headlines("lang=es") == ["list: b", "list: a2"]
    assert await headlines("lang=es&limit=1") == ["list: b"]
    assert await headlines("lang=es&max_urgency=3") == ["list: a2"]
    assert await headlines("lang=es&region=latin-america") == ["list: a2"]
    assert await headlines("lang=es-mx") == ["list: b"]
    assert b["uri"] != a["uri"]
    for bad in ("limit=0", "limit=abc", "max_urgency=10"):
        assert_problem(await client.get(f"{service.base_url}/v1/flashes?{bad}"), 400)
