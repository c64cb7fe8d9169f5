"""Private topics: readers need a JWT granting them, and every kind of bad token is refused (the JWT matrix)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from ticker_client import TickerClient
from ticker_client.client import TerminalError
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ticker_service.settings import Settings

from ..support.flashes import publish
from ..support.processes import TIMEOUT, Service, ServiceFactory
from ..support.readers import SSEReader, next_ws_event

ISSUER = "https://auth.example"
PRIVATE = "health"  # a category marked private in this module's service


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = rsa_key()
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISSUER, "aud": "ticker", "exp": int(time.time()) + 600, "topics": [PRIVATE]}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def good(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), KEY, algorithm="RS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(alg: str, payload: dict[str, Any], secret: bytes = b"") -> str:
    """A JWT built by hand: ``alg: none``, or HS256 with ``secret`` (PyJWT refuses to make these)."""
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64(json.dumps(payload).encode())
    if alg == "none":
        return head + "."
    return head + "." + b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


BAD_TOKENS = {
    "alg none": lambda: unsigned("none", claims()),
    "HS256 signed with the public key": lambda: unsigned("HS256", claims(), PUBLIC_PEM),
    "wrong aud": lambda: good(aud="someone-else"),
    "wrong iss": lambda: good(iss="https://evil.example"),
    "expired": lambda: good(exp=int(time.time()) - 60),
    "missing exp": lambda: good(exp=None),
    "missing iss": lambda: good(iss=None),
    "another key": lambda: jwt.encode(claims(), rsa_key(), algorithm="RS256"),
    "garbage": lambda: "not.a.jwt",
}


@pytest.fixture(scope="module")
def private(service_factory: ServiceFactory) -> Service:
    return service_factory(
        name="private",
        TICKER_PRIVATE_TOPICS=PRIVATE,
        TICKER_JWT_ALGORITHM="RS256",
        TICKER_JWT_KEY=PUBLIC_PEM.decode(),
        TICKER_JWT_ISSUER=ISSUER,
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The shared ``client`` without a read timeout: its streams wait for events as long as a test says."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as client:
        yield client


async def last_event_id(client: httpx.AsyncClient, service: Service) -> str:
    return str((await client.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"])


async def publish_pair(client: httpx.AsyncClient, service: Service) -> tuple[dict[str, Any], dict[str, Any]]:
    """A private flash, then a public one: a reader without the grant sees the public one first."""
    secret = await publish(client, service, "BREAKING: private health news", category=PRIVATE)
    public = await publish(client, service, "BREAKING: public politics news", category="politics")
    return secret, public


async def test_websocket_readers_get_private_flashes_only_with_a_grant(
    private: Service, client: httpx.AsyncClient
) -> None:
    """Header and subprotocol tokens unlock the private topic; no token, or one for other topics, does not."""
    query = f"?last_event_id={await last_event_id(client, private)}"
    url = f"{private.ws_url}/v1/stream{query}"
    token = good()
    async with (
        websockets.connect(url, open_timeout=TIMEOUT) as anonymous,
        websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as by_header,
        websockets.connect(url, subprotocols=["ticker", f"ticker.bearer.{token}"]) as by_subprotocol,  # type: ignore[list-item]
        websockets.connect(url, additional_headers={"Authorization": f"Bearer {good(topics=['sports'])}"}) as other,
    ):
        assert by_subprotocol.subprotocol == "ticker"
        secret, public = await publish_pair(client, private)
        for granted in (by_header, by_subprotocol):
            assert (await next_ws_event(granted))["flash"]["uri"] == secret["uri"]
            assert (await next_ws_event(granted))["flash"]["uri"] == public["uri"]
        for denied in (anonymous, other):
            assert (await next_ws_event(denied))["flash"]["uri"] == public["uri"]


async def test_sse_takes_the_token_from_a_cookie_or_the_header(private: Service, client: httpx.AsyncClient) -> None:
    """An HttpOnly cookie set by /v1/reader-session, or the header, unlock the topic; without them, nothing."""
    session = await client.post(f"{private.base_url}/v1/reader-session", headers={"Authorization": f"Bearer {good()}"})
    assert session.status_code == 200, session.text
    cookie = session.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/v1/" in cookie
    query = f"last_event_id={await last_event_id(client, private)}"
    url = f"{private.base_url}/v1/events?{query}"
    cookie_value = session.cookies["ticker_reader"]
    async with (
        client.stream("GET", url, headers={"Cookie": f"ticker_reader={cookie_value}"}) as by_cookie,
        client.stream("GET", url, headers={"Authorization": f"Bearer {good()}"}) as by_header,
        httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as bare,
        bare.stream("GET", url) as anonymous,
    ):
        secret, public = await publish_pair(client, private)
        for response in (by_cookie, by_header):
            reader = SSEReader(response)
            assert (await reader.next_event())["flash"]["uri"] == secret["uri"]
            assert (await reader.next_event())["flash"]["uri"] == public["uri"]
        assert (await SSEReader(anonymous).next_event())["flash"]["uri"] == public["uri"]


async def test_http_api_hides_private_flashes_without_a_grant(private: Service, client: httpx.AsyncClient) -> None:
    """GET /v1/flashes leaves private flashes out, and GET /v1/flashes/{id} says 404, unless the token grants."""
    secret = await publish(client, private, "BREAKING: private, listed only with a grant", category=PRIVATE)
    location = f"{private.base_url}/v1/flashes/{secret['uri'].rsplit(':', 1)[-1]}"
    assert (await client.get(location)).status_code == 404
    granted = {"Authorization": f"Bearer {good()}"}
    assert (await client.get(location, headers=granted)).json()["uri"] == secret["uri"]
    listed = (await client.get(f"{private.base_url}/v1/flashes?limit=200")).json()["flashes"]
    assert secret["uri"] not in {f["uri"] for f in listed}
    listed = (await client.get(f"{private.base_url}/v1/flashes?limit=200", headers=granted)).json()["flashes"]
    assert secret["uri"] in {f["uri"] for f in listed}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_reader_tokens_are_refused_everywhere(case: str, private: Service, client: httpx.AsyncClient) -> None:
    """Each bad JWT: WebSocket handshake 401 (header or subprotocol), SSE 401, API 401, session 401."""
    token = BAD_TOKENS[case]()
    for kwargs in (
        {"additional_headers": {"Authorization": f"Bearer {token}"}},
        {"subprotocols": ["ticker", f"ticker.bearer.{token}"]},
    ):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(f"{private.ws_url}/v1/stream", open_timeout=TIMEOUT, **kwargs):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 401, case
    headers = {"Authorization": f"Bearer {token}"}
    sse = await client.get(f"{private.base_url}/v1/events", headers=headers)
    assert sse.status_code == 401 and sse.headers["content-type"] == "application/problem+json", case
    cookie = await client.get(f"{private.base_url}/v1/events", headers={"Cookie": f"ticker_reader={token}"})
    assert cookie.status_code == 401, case
    assert (await client.get(f"{private.base_url}/v1/flashes", headers=headers)).status_code == 401, case
    assert (await client.post(f"{private.base_url}/v1/reader-session", headers=headers)).status_code == 401, case


async def test_topic_not_granted_gives_no_access(private: Service, client: httpx.AsyncClient) -> None:
    """A valid token for other topics connects but never receives the private topic (also after resubscribing)."""
    query = f"?last_event_id={await last_event_id(client, private)}"
    headers = {"Authorization": f"Bearer {good(topics=['sports', 'premium'])}"}
    async with websockets.connect(f"{private.ws_url}/v1/stream{query}", additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "subscribe", "category": PRIVATE + ",politics"}))
        await ws.ping()
        _, public = await publish_pair(client, private)
        assert (await next_ws_event(ws))["flash"]["uri"] == public["uri"]


async def test_connection_is_closed_when_its_token_expires(private: Service, client: httpx.AsyncClient) -> None:
    """WebSocket: close 4401 at the token's exp; SSE: the stream ends."""
    headers = {"Authorization": f"Bearer {good(exp=int(time.time()) + 2)}"}

    async def websocket() -> None:
        async with websockets.connect(f"{private.ws_url}/v1/stream", additional_headers=headers) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    async def sse() -> None:
        async with client.stream("GET", f"{private.base_url}/v1/events", headers=headers) as response:
            assert response.status_code == 200
            with pytest.raises(EOFError):
                await SSEReader(response).next_event()

    await asyncio.gather(websocket(), sse())


def test_private_topics_without_a_way_to_verify_tokens_refuse_to_start(tmp_path: Path) -> None:
    """Settings fail loudly: private topics without a key or issuer, or the algorithm 'none'."""
    with pytest.raises(ValidationError, match="TICKER_JWT_KEY and TICKER_JWT_ISSUER"):
        Settings(data_dir=tmp_path, private_topics=("health",), jwt_key="k")
    with pytest.raises(ValidationError, match="not 'none'"):
        Settings(data_dir=tmp_path, jwt_algorithm="none")
    assert Settings(data_dir=tmp_path, private_topics=("health",), jwt_key="k", jwt_issuer="i").private_topics


async def test_python_client_reads_private_topics_with_a_token(private: Service, client: httpx.AsyncClient) -> None:
    """ticker_client sends the token on both transports, and a token function gets a fresh one after expiry."""
    start = await last_event_id(client, private)
    issued: list[str] = []

    def fresh() -> str:
        issued.append(good(exp=int(time.time()) + (1 if not issued else 600)))
        return issued[-1]

    async def first_two(transport: str, token: Any) -> list[str]:
        uris: list[str] = []
        async with TickerClient(private.base_url, transport=transport, last_event_id=start, token=token) as reader:  # type: ignore[arg-type]
            async for event in reader:
                uris.append(event.flash["uri"])
                if len(uris) == 2:
                    return uris
        return uris

    readers = [asyncio.create_task(first_two(t, good())) for t in ("ws", "sse")]
    secret, public = await publish_pair(client, private)
    for task in readers:
        assert await asyncio.wait_for(task, TIMEOUT) == [secret["uri"], public["uri"]]
    later = "BREAKING: after the first token expired"

    async def publish_after_refresh() -> None:
        deadline = time.monotonic() + TIMEOUT
        while len(issued) < 2:  # the client met close 4401 and asked for a fresh token
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await publish(client, private, later, category=PRIVATE)

    async with TickerClient(private.base_url, last_event_id=start, token=fresh, max_delay=0.5) as reader:
        seen = [event.flash["uri"] async for event in _take(reader, 2)]
        assert seen == [secret["uri"], public["uri"]]
        publisher = asyncio.create_task(publish_after_refresh())
        async for event in reader:
            if event.flash["headlines"][0]["value"] == later:
                break
        await publisher
    assert len(issued) >= 2  # the first token expired (close 4401) and the client fetched another
    with pytest.raises(TerminalError):
        async with TickerClient(private.base_url, token=good(exp=int(time.time()) + 1)) as reader:
            async for _ in reader:
                pass


async def _take(reader: TickerClient, count: int) -> AsyncIterator[Any]:
    seen = 0
    async for event in reader:
        yield event
        seen += 1
        if seen == count:
            return
