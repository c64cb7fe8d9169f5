"""Browser origins: the WebSocket Origin allowlist (checked before the handshake completes), CORS, headers."""

from __future__ import annotations

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from ..support.processes import TIMEOUT, Service, ServiceFactory

LISTED = "https://news.example"
FOREIGN = "https://evil.example"


@pytest.fixture(scope="module")
def default_origins(service_factory: ServiceFactory) -> Service:
    return service_factory(name="origins-default")


@pytest.fixture(scope="module")
def listed_origins(service_factory: ServiceFactory) -> Service:
    return service_factory(name="origins-listed", TICKER_ALLOWED_ORIGINS=LISTED)


async def ws_status(service: Service, origin: str | None, path: str = "/v1/stream") -> int:
    """The handshake's HTTP status: 101 if the stream opened."""
    try:
        async with websockets.connect(f"{service.ws_url}{path}", origin=origin, open_timeout=TIMEOUT) as ws:  # type: ignore[arg-type]
            await ws.ping()
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_websocket_default_allows_own_origin_and_non_browsers(default_origins: Service) -> None:
    """With no list, the service's own origin and clients that send no Origin (not browsers) may connect."""
    assert await ws_status(default_origins, default_origins.base_url) == 101
    assert await ws_status(default_origins, None) == 101


async def test_websocket_from_foreign_origin_is_refused_before_the_handshake(default_origins: Service) -> None:
    """A page on another site gets 403 instead of 101: no stream, on either WebSocket path."""
    for origin in (FOREIGN, "null", default_origins.base_url.replace("127.0.0.1", "localhost")):
        assert await ws_status(default_origins, origin) == 403, origin


async def test_websocket_with_a_list_allows_exactly_the_listed_origins(listed_origins: Service) -> None:
    """With TICKER_ALLOWED_ORIGINS, the listed origin connects; others, near misses included, get 403."""
    assert await ws_status(listed_origins, LISTED) == 101
    for origin in (FOREIGN, LISTED + ":8443", "http://news.example", "https://news.example.evil.example"):
        assert await ws_status(listed_origins, origin) == 403, origin


async def test_cors_echoes_a_listed_origin_with_credentials_never_a_wildcard(
    listed_origins: Service, client: httpx.AsyncClient
) -> None:
    """A listed origin is allowed by name, with credentials (preflight, API, SSE). Any other page may read the
    public data (``*``) but never with credentials, and cannot preflight a request that carries them."""
    url = f"{listed_origins.base_url}/v1/flashes"
    preflight = await client.options(
        url,
        headers={
            "Origin": LISTED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == LISTED
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    listed = await client.get(url, headers={"Origin": LISTED})
    assert listed.headers.get_list("access-control-allow-origin") == [LISTED]
    assert listed.headers["access-control-allow-credentials"] == "true"
    foreign = await client.get(url, headers={"Origin": FOREIGN})
    assert foreign.headers.get_list("access-control-allow-origin") == ["*"]
    assert "access-control-allow-credentials" not in foreign.headers
    refused = await client.options(url, headers={"Origin": FOREIGN, "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    async with client.stream("GET", f"{listed_origins.base_url}/v1/events", headers={"Origin": LISTED}) as sse:
        assert sse.status_code == 200
        assert sse.headers.get_list("access-control-allow-origin") == [LISTED]
        assert sse.headers["access-control-allow-credentials"] == "true"
    async with client.stream("GET", f"{listed_origins.base_url}/v1/events", headers={"Origin": FOREIGN}) as sse:
        assert sse.headers.get_list("access-control-allow-origin") == ["*"]
        assert "access-control-allow-credentials" not in sse.headers


async def test_security_headers(default_origins: Service, client: httpx.AsyncClient) -> None:
    """API answers are never cached and never sniffed; the page carries a strict CSP."""
    base = default_origins.base_url
    for response in (
        await client.get(f"{base}/v1/flashes"),
        await client.get(f"{base}/v1/flashes/nope"),
        await client.post(f"{base}/v1/flashes", json={}),
        await client.get(f"{base}/healthz"),
    ):
        assert response.headers["cache-control"] == "no-store", response.url
        assert response.headers["x-content-type-options"] == "nosniff", response.url
    page = await client.get(f"{base}/")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp and "*" not in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert not {"ws:", "wss:", "http:", "https:"} & set(csp.replace(";", " ").split())  # no scheme-wide sources
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def plain_asgi(service_factory: ServiceFactory) -> Service:
    """The app under plain uvicorn (no native protocols): the ASGI WebSocket endpoint serves /v1/stream."""
    return service_factory("asgi")


async def test_asgi_fallback_checks_the_origin_too(plain_asgi: Service) -> None:
    """Served through ASGI, /v1/stream refuses a foreign Origin before accepting (403) and allows its own."""
    assert await ws_status(plain_asgi, FOREIGN) == 403
    assert await ws_status(plain_asgi, plain_asgi.base_url) == 101
    assert await ws_status(plain_asgi, None) == 101
