"""An Idempotency-Key whose first request is still in flight answers 409 (in-process app, both brokers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ticker_service.api.flashes import fingerprint, idempotency_scope
from ticker_service.app import create_app
from ticker_service.broker import create_broker
from ticker_service.flashes import FlashIn
from ticker_service.security.tokens import Editor, digest
from ticker_service.settings import Settings

from .support.flashes import flash_body
from .support.processes import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def app_client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    server = None
    if request.param == "redis":
        server = RedisServer(tmp_path)
        server.start()
    settings = Settings(redis_url=server.url if server else None, data_dir=tmp_path / "data")
    broker = create_broker(settings, run_fanout=False)
    app = create_app(settings, broker=broker)
    token = await app.state.tokens.create("editor")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ticker") as client:
        yield client, token
    await broker.close()
    if server:
        server.stop()


async def test_in_flight_key_is_409_then_released_key_publishes(app_client: tuple[httpx.AsyncClient, str]) -> None:
    client, token = app_client
    broker = client._transport.app.state.broker  # type: ignore[attr-defined]
    body = flash_body("BREAKING: in flight")
    scope = idempotency_scope(Editor("editor", digest(token)), "slow-key")
    # Another request with this key and body has claimed it and not finished yet.
    claim = await broker.claim(scope, fingerprint(FlashIn.model_validate(body)))
    assert claim.state == "new"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "slow-key"}
    response = await client.post("/v1/flashes", json=body, headers=headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    # The first request failed and let go of its claim: the key can be used.
    await broker.release(scope, claim.token)
    assert (await client.post("/v1/flashes", json=body, headers=headers)).status_code == 201
