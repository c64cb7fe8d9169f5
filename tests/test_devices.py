"""Device registry against a real ``ticker hub`` on a private Redis: registration, validation, secrets, index."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from ticker_service.filters import Filter
from ticker_service.keys import DEVICE_PREFIX as DEVICE
from ticker_service.push.store import DeviceStore

from .support.devices import subscription
from .support.processes import Service, ServiceFactory

FCM_TOKEN = "fcm-token:" + "a" * 140
APNS_TOKEN = "ab" * 32


@pytest.fixture
def client(distributed: Service) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=distributed.base_url, timeout=10) as client:
        yield client


def register(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/devices", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def test_register_each_platform(client: httpx.Client, distributed: Service) -> None:
    """Each platform registers; the default filter is urgency 1–2; only a hash of the secret is stored."""
    fcm = register(client, platform="fcm", token=FCM_TOKEN + "1", lang="en,fr", category="politics")
    apns = register(client, platform="apns", token=APNS_TOKEN, region=["europe", "mena"], max_urgency=5)
    web = register(client, platform="webpush", subscription=subscription())
    assert fcm["device"] == {
        "id": fcm["id"],
        "platform": "fcm",
        "max_urgency": "2",
        "lang": "en,fr",
        "category": "politics",
    }
    assert apns["device"]["region"] == "europe,mena" and apns["device"]["max_urgency"] == "5"
    assert web["device"]["max_urgency"] == "2"
    assert len({fcm["secret"], apns["secret"], web["secret"]}) == 3
    assert distributed.redis is not None
    with distributed.redis.client() as redis:
        stored = redis.hgetall(DEVICE + fcm["id"])
    assert fcm["secret"].encode() not in b"".join(stored.values())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"platform": "sms", "token": FCM_TOKEN}, "platform"),
        ({"platform": "fcm"}, "body"),
        ({"platform": "fcm", "token": "short"}, "token"),
        ({"platform": "apns", "token": "not-hex" * 10}, "token"),
        ({"platform": "fcm", "token": FCM_TOKEN, "subscription": subscription()}, "body"),
        ({"platform": "webpush", "subscription": subscription("http://fcm.googleapis.com/x")}, "subscription.endpoint"),
        ({"platform": "webpush", "subscription": subscription("https://evil.example/x")}, "subscription.endpoint"),
        (
            {"platform": "webpush", "subscription": subscription("https://u:p@fcm.googleapis.com/x")},
            "subscription.endpoint",
        ),
        (
            {"platform": "webpush", "subscription": {**subscription(), "keys": {"p256dh": "AAAA", "auth": "AAAA"}}},
            "p256dh",
        ),
        ({"platform": "webpush", "subscription": {**subscription(), "extra": 1}}, "subscription.extra"),
        ({"platform": "fcm", "token": FCM_TOKEN, "category": "gossip"}, "category"),
        ({"platform": "fcm", "token": FCM_TOKEN, "region": "atlantis"}, "region"),
        ({"platform": "fcm", "token": FCM_TOKEN, "lang": "english!"}, "lang"),
        ({"platform": "fcm", "token": FCM_TOKEN, "max_urgency": 0}, "max_urgency"),
        ({"platform": "fcm", "token": FCM_TOKEN, "colour": "red"}, "colour"),
    ],
)
def test_invalid_registration(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    """Every field is validated: 422 with a problem naming the bad field."""
    response = client.post("/v1/devices", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in response.json()["errors"]]
    assert any(f == field or f.endswith("." + field) or f.startswith(field) for f in fields), fields


def test_body_limits(client: httpx.Client) -> None:
    """Not JSON → 415, not an object → 422, over the body limit → 413."""
    assert client.post("/v1/devices", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/v1/devices", json=[1]).status_code == 422
    assert client.post("/v1/devices", json={"platform": "fcm", "token": "a" * 20_000}).status_code == 413


def test_update_and_delete_need_the_secret(client: httpx.Client) -> None:
    """PUT/DELETE: 401 without or with a wrong secret, and for an unknown or deleted id (the same answer, so a
    caller without the secret learns nothing of the id); the right secret works."""
    device = register(client, platform="fcm", token=FCM_TOKEN + "2")
    url = f"/v1/devices/{device['id']}"
    body = {"platform": "fcm", "token": FCM_TOKEN + "2", "category": "sports", "max_urgency": 4}
    assert client.put(url, json=body).status_code == 401
    assert client.put(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.put("/v1/devices/" + "0" * 32, json=body, headers={"Authorization": "Bearer x"}).status_code == 401
    auth = {"Authorization": f"Bearer {device['secret']}"}
    response = client.put(url, json=body, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["device"]["category"] == "sports"
    assert client.delete(url).status_code == 401
    assert client.delete(url, headers=auth).status_code == 204
    assert client.delete(url, headers=auth).status_code == 401


async def test_index_finds_exactly_the_matching_devices(client: httpx.Client, distributed: Service) -> None:
    """For flashes across languages, categories, regions and urgencies, the index's answer equals the filter's."""
    filters = [
        {},
        {"lang": "en"},
        {"lang": "en-gb"},
        {"lang": "ar", "max_urgency": 9},
        {"category": "politics,economy", "max_urgency": 3},
        {"region": "europe", "max_urgency": 9},
        {"lang": "en", "category": "sports", "region": "mena,europe", "max_urgency": 1},
    ]
    assert distributed.redis is not None
    async with Redis.from_url(distributed.redis.url) as redis:
        await redis.flushdb()
        store = DeviceStore(redis)
        ids = {}
        for n, flt in enumerate(filters):
            ids[register(client, platform="fcm", token=f"{FCM_TOKEN}-{n}", **flt)["id"]] = Filter.parse(
                {"max_urgency": 2, **flt}
            )
        docs = [
            {
                "language": lang,
                "urgency": urgency,
                "subjects": [{"literal": cat}],
                "places": [{"literal": r} for r in regions],
            }
            for lang, cat, regions, urgency in itertools.product(
                ["en", "en-GB", "ar", "fr"], ["politics", "sports"], [[], ["europe"], ["mena", "asia"]], [1, 3, 9]
            )
        ]
        for doc in docs:
            expected = sorted(i for i, flt in ids.items() if flt.matches(doc))
            assert await store.targets(doc) == expected, doc


def test_same_token_registers_once(client: httpx.Client, distributed: Service) -> None:
    """A reinstalled app registering its token again replaces its old entry: one device, not two."""
    first = register(client, platform="apns", token="cd" * 32)
    second = register(client, platform="apns", token="CD" * 32)
    assert distributed.redis is not None
    with distributed.redis.client() as redis:
        assert not redis.exists(DEVICE + first["id"])
        assert redis.exists(DEVICE + second["id"])


def test_vapid_key_absent_until_configured(client: httpx.Client) -> None:
    assert client.get("/v1/push/vapid-public-key").status_code == 404


def test_embedded_mode_answers_503(service_factory: ServiceFactory) -> None:
    """Without Redis there is no worker to send pushes: registration is refused with a problem saying why."""
    service = service_factory(name="embedded-devices")
    try:
        response = httpx.post(f"{service.base_url}/v1/devices", json={"platform": "fcm", "token": FCM_TOKEN})
        assert response.status_code == 503
        assert "REDIS_URL" in response.json()["detail"]
    finally:
        service.stop()


def test_device_writes_per_address_are_limited(service_factory: ServiceFactory) -> None:
    """Registration is public, so one address gets a bounded number of writes a minute, then 429 + Retry-After."""
    service = service_factory("redis", name="device-limit", TICKER_DEVICE_WRITES_PER_MINUTE="3")
    try:
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            statuses = []
            for n in range(7):  # a fixed one-minute window: even if it turns once meanwhile, 7 > 2 × 3
                response = client.post("/v1/devices", json={"platform": "fcm", "token": f"{FCM_TOKEN}-{n}"})
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert int(response.headers["retry-after"]) >= 1
                    assert response.headers["content-type"] == "application/problem+json"
                    assert "device writes" in response.json()["detail"]
            assert statuses[:3] == [201, 201, 201], statuses
            assert 429 in statuses, statuses
    finally:
        service.stop()
