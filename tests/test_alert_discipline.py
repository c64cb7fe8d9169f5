"""Alert discipline on the push fakes: the per-device hourly cap (a FLASH goes through it, a correction does not
count again) and the breaking TTL (``TICKER_PUSH_BREAKING_TTL_SECONDS``, sooner when the flash ``expires``), as the
headers and fields FCM, APNs and the Web Push service receive.

Real Redis, ``ticker hub`` and ``ticker worker``; the cap per story (not per version) is checked on Redis directly
in tests/test_push_claims.py.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ticker_service.push.vapid import generate

from .support.fakes.base import Fake
from .support.fakes.services import PushFakes
from .support.flashes import flash_body, flash_id
from .support.processes import Service, ServiceFactory, drain_jobs, wait_until

CAP = 2
TTL = 600
PLATFORMS = ("apns", "fcm", "webpush")


@dataclass
class Setup:
    service: Service
    fakes: PushFakes
    client: httpx.Client

    def fake(self, platform: str) -> Fake:
        fake: Fake = getattr(self.fakes, platform)
        return fake


@pytest.fixture(scope="module")
def push(service_factory: ServiceFactory) -> Iterator[Setup]:
    tmp = service_factory.directory("discipline")
    pem, public = generate()
    fakes = PushFakes.start(tmp)
    fakes.webpush.vapid_public_key = public
    service = service_factory(
        "redis",
        directory=tmp,
        TICKER_PUSH_MAX_PER_DEVICE_HOUR=str(CAP),
        TICKER_PUSH_BREAKING_TTL_SECONDS=str(TTL),
        **fakes.env(tmp, pem),
    )
    client = httpx.Client(base_url=service.base_url, timeout=10)
    try:
        yield Setup(service, fakes, client)
    finally:
        client.close()
        service.stop()
        fakes.stop()


def register(setup: Setup, platform: str, category: str) -> str:
    """A device for ``category`` that takes every urgency; the address its push service knows it by."""
    if platform == "webpush":
        sub = setup.fakes.webpush.subscribe()
        body: dict[str, Any] = {"subscription": sub}
        address = str(sub["endpoint"]).rsplit("/", 1)[-1]
    else:
        address = secrets.token_hex(32) if platform == "apns" else f"fcm-{secrets.token_urlsafe(40)}"
        body = {"token": address}
    response = setup.client.post(
        "/v1/devices", json={"platform": platform, **body, "category": category, "max_urgency": 9}
    )
    assert response.status_code == 201, response.text
    return address


def publish(setup: Setup, category: str, urgency: int, **extra: Any) -> str:
    body = flash_body(f"BREAKING: {secrets.token_hex(4)}", category=category, urgency=urgency, **extra)
    response = setup.client.post("/v1/flashes", json=body, headers=setup.service.headers())
    assert response.status_code == 201, response.text
    return flash_id(response.json())


def flash_ids(setup: Setup, platform: str, address: str) -> list[str]:
    """The flash ids of what the device's push service accepted for it, in order."""
    out = []
    for message in setup.fake(platform).to(address):
        fields = message.body.get("ticker") or message.body.get("data") or message.body
        out.append(f"{fields['type']}:{fields['flash_id']}")
    return out


def test_cap_lets_a_flash_through_and_corrections_do_not_count(push: Setup) -> None:
    """With a cap of 2: two new flashes are notified, a correction goes through without counting, the third flash
    of urgency 2 is capped (and so is its correction), and a FLASH (urgency 1) still goes through."""
    devices = {p: register(push, p, "sports") for p in PLATFORMS}
    sent: list[str] = []

    def step(expected: str) -> None:
        sent.append(expected)
        for platform, address in devices.items():
            wait_until(lambda p=platform, a=address: len(flash_ids(push, p, a)) >= len(sent), f"{platform}: {expected}")

    first = publish(push, "sports", urgency=2)
    step(f"flash:{first}")
    corrected = push.client.patch(f"/v1/flashes/{first}", json={"urgency": 3}, headers=push.service.headers())
    assert corrected.status_code == 200
    step(f"update:{first}")
    second = publish(push, "sports", urgency=5)
    step(f"flash:{second}")
    capped = publish(push, "sports", urgency=2)
    drain_jobs(push.service)
    fixed = push.client.patch(f"/v1/flashes/{capped}", json={"headline": "corrected"}, headers=push.service.headers())
    assert fixed.status_code == 200  # a correction of a story the device was capped on: capped too
    drain_jobs(push.service)
    flash = publish(push, "sports", urgency=1)
    step(f"flash:{flash}")
    drain_jobs(push.service)
    for platform, address in devices.items():
        assert flash_ids(push, platform, address) == sent, platform
        assert not any(capped in sent for sent in flash_ids(push, platform, address))
    stats = push.service.redis
    assert stats is not None
    with stats.client() as redis:
        counts = {k.decode(): int(v) for k, v in redis.hgetall("ticker:push:stats").items()}
    assert all(counts.get(f"{p}:capped", 0) >= 1 for p in PLATFORMS), counts


def test_notifications_expire_after_the_breaking_ttl_or_sooner(push: Setup) -> None:
    """``TICKER_PUSH_BREAKING_TTL_SECONDS`` sets APNs ``apns-expiration``, FCM ``android.ttl`` and its ``apns``
    headers, and the Web Push ``TTL``; a flash that expires sooner expires its notifications then."""
    soon = datetime.now(UTC) + timedelta(seconds=120)
    devices = {category: {p: register(push, p, category) for p in PLATFORMS} for category in ("health", "economy")}
    cases = {
        "health": (publish(push, "health", urgency=1), TTL),
        "economy": (publish(push, "economy", urgency=1, expires=soon.isoformat()), 120),
    }
    for name, (fid, ttl) in cases.items():
        targets = devices[name]
        for platform, address in targets.items():
            fake = push.fake(platform)
            wait_until(lambda f=fake, a=address: len(f.to(a)) == 1, f"{platform} notification ({name})")
        now = time.time()
        apns = push.fakes.apns.to(targets["apns"])[0]
        assert now + ttl - 30 < int(apns.headers["apns-expiration"]) <= now + ttl + 1, name
        assert apns.headers["apns-collapse-id"] == fid
        fcm = push.fakes.fcm.to(targets["fcm"])[0].body
        assert ttl - 30 < int(fcm["android"]["ttl"].removesuffix("s")) <= ttl, name
        assert now + ttl - 30 < int(fcm["apns"]["headers"]["apns-expiration"]) <= now + ttl + 1, name
        web = push.fakes.webpush.to(targets["webpush"])[0]
        assert ttl - 30 < int(web.headers["ttl"]) <= ttl, name
