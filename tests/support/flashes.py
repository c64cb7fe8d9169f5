"""What an editor sends: a flash body, a publish through the API, and a flash's id in its document's uri."""

from __future__ import annotations

from typing import Any

import httpx

from .processes import Service


def flash_body(headline: str = "BREAKING: test flash", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "headline": headline,
        "language": "en",
        "category": "politics",
        "urgency": 1,
        "regions": ["europe"],
    }
    body.update(overrides)
    return body


async def publish(
    client: httpx.AsyncClient, service: Service, headline: str = "BREAKING: test flash", **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{service.base_url}/v1/flashes", json=flash_body(headline, **overrides), headers=service.headers()
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def flash_id(doc: dict[str, Any]) -> str:
    return str(doc["uri"]).replace("/", ":").rsplit(":", 1)[-1]
