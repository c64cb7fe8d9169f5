"""Push end to end: real Redis, ``ticker hub`` and ``ticker worker`` processes, and local FCM, APNs and Web Push
services over TLS + HTTP/2 that check what the real ones check (tests/support/fakes/)."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ticker_service.keys import DEVICE_PREFIX as DEVICE
from ticker_service.keys import PUSH_SENT_PREFIX as SENT_SET

from .support.fakes.services import PushFakes
from .support.flashes import flash_body, flash_id
from .support.processes import (
    Service,
    ServiceFactory,
    drain_jobs,
    free_port,
    run_ticker,
    start_distributed,
    start_worker,
    wait_until,
)

CONCURRENCY = 8


@dataclass
class Setup:
    service: Service
    fakes: PushFakes
    client: httpx.Client
    vapid_public: str
    tmp: Path
    metrics_url: str = ""


@pytest.fixture(scope="module")
def push(service_factory: ServiceFactory) -> Iterator[Setup]:
    yield from push_setup(service_factory)


def push_setup(service_factory: ServiceFactory, name: str = "push", **extra_env: str) -> Iterator[Setup]:
    """The push fixture's service (Redis, hub, worker, the three fakes), with ``extra_env`` on top."""
    tmp = service_factory.directory(name)
    made = run_ticker({**_env(), "PYTHONUNBUFFERED": "1"}, "push", "vapid-keys", "--out", str(tmp / "cli-vapid.pem"))
    assert made.returncode == 0, made.stderr
    vapid_public = made.stdout.strip().splitlines()[-1]
    fakes = PushFakes.start(tmp)
    fakes.webpush.vapid_public_key = vapid_public
    env = fakes.env(tmp, (tmp / "cli-vapid.pem").read_text())
    metrics_port = free_port()
    service = service_factory(
        "redis",
        directory=tmp,
        TICKER_PUSH_CONCURRENCY=str(CONCURRENCY),
        TICKER_LOG_LEVEL="info",
        TICKER_WORKER_METRICS_PORT=str(metrics_port),
        TICKER_DEVICE_WRITES_PER_MINUTE="100000",  # the tests register hundreds of devices from one address
        **env,
        **extra_env,
    )
    client = httpx.Client(base_url=service.base_url, timeout=10)
    try:
        yield Setup(service, fakes, client, vapid_public, tmp, f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        client.close()
        service.stop()
        fakes.stop()


def _env() -> dict[str, str]:
    from .support.processes import base_env

    return base_env()


def register(setup: Setup, platform: str, **flt: Any) -> tuple[str, str]:
    """Register a device; return (device id, the address the fake sees: token or subscription id)."""
    if platform == "webpush":
        sub = setup.fakes.webpush.subscribe()
        body: dict[str, Any] = {"platform": platform, "subscription": sub}
        address = str(sub["endpoint"]).rsplit("/", 1)[-1]
    else:
        address = secrets.token_hex(32) if platform == "apns" else f"fcm-{secrets.token_urlsafe(40)}"
        body = {"platform": platform, "token": address}
    response = setup.client.post("/v1/devices", json={**body, **flt})
    assert response.status_code == 201, response.text
    return response.json()["id"], address


def publish(setup: Setup, **overrides: Any) -> dict[str, Any]:
    body = flash_body(f"BREAKING: {secrets.token_hex(4)} — push test", **overrides)
    response = setup.client.post("/v1/flashes", json=body, headers=setup.service.headers())
    assert response.status_code == 201, response.text
    doc: dict[str, Any] = response.json()
    return doc


def fake_for(setup: Setup, platform: str) -> Any:
    return getattr(setup.fakes, platform)


def drain(setup: Setup) -> None:
    """Wait until arq has no push job queued (deferred retries included) or running."""
    drain_jobs(setup.service)


PLATFORMS = ("fcm", "apns", "webpush")


def test_bridges_say_they_are_on(push: Setup) -> None:
    """The worker logs each configured bridge at start-up; the hub serves the VAPID key from the CLI."""
    log = (push.tmp / "worker.log").read_text()
    for platform in PLATFORMS:
        assert f"push bridge {platform}: on" in log, log[-2000:]
    assert push.client.get("/v1/push/vapid-public-key").json() == {"publicKey": push.vapid_public}


def test_one_notification_per_matching_device(push: Setup) -> None:
    """Each matching device on each platform gets exactly one notification, with the urgency mapping; others none."""
    matching = {p: [register(push, p, lang="en", category="politics") for _ in range(3)] for p in PLATFORMS}
    others = {
        p: [
            register(push, p, category="economy"),
            register(push, p, lang="fr", category="politics"),
            register(push, p, category="politics", region="asia"),
            register(push, p, category="politics", max_urgency=1),
        ]
        for p in PLATFORMS
    }
    doc = publish(push, category="politics", urgency=1, language="en-GB")
    fid, headline = flash_id(doc), doc["headlines"][0]["value"]
    for platform, devices in matching.items():
        fake = fake_for(push, platform)
        for _, address in devices:
            wait_until(lambda f=fake, a=address: len(f.to(a)) >= 1, f"{platform} notification to {address}")
    drain(push)
    for platform in PLATFORMS:
        fake = fake_for(push, platform)
        assert [len(fake.to(a)) for _, a in matching[platform]] == [1, 1, 1], platform
        assert [len(fake.to(a)) for _, a in others[platform][:3]] == [0, 0, 0], platform
    # urgency 1 reaches the max_urgency=1 devices too
    assert all(len(fake_for(push, p).to(others[p][3][1])) == 1 for p in PLATFORMS)

    apns = push.fakes.apns.to(matching["apns"][0][1])[0]
    assert apns.headers["apns-priority"] == "10" and apns.headers["apns-push-type"] == "alert"
    assert apns.headers["apns-collapse-id"] == fid
    assert apns.body["aps"]["interruption-level"] == "time-sensitive"
    assert apns.body["aps"]["alert"]["body"] == headline
    fcm = push.fakes.fcm.to(matching["fcm"][0][1])[0].body
    assert fcm["android"]["priority"] == "HIGH" and fcm["android"]["collapse_key"] == fid
    assert fcm["notification"]["body"] == headline and fcm["data"]["lang"] == "en-GB"
    web = push.fakes.webpush.to(matching["webpush"][0][1])[0]
    assert web.headers["urgency"] == "high" and web.headers["topic"] == fid
    assert 0 < int(web.headers["ttl"]) <= 4 * 3600
    assert web.body["headline"] == headline and web.body["dir"] == "ltr" and web.body["type"] == "flash"
    assert push.fakes.fcm.grants == 1  # the OAuth token is cached


def sent_metric(push: Setup, platform: str) -> float:
    """``ticker_push_notifications_total`` of ``platform`` and outcome ``sent`` on the worker's /metrics."""
    for line in httpx.get(push.metrics_url, timeout=5).text.splitlines():
        if line.startswith("ticker_push_notifications_total{") and f'platform="{platform}"' in line:
            if 'outcome="sent"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_stats_count_outcomes(push: Setup) -> None:
    """GET /v1/push/stats (admin token) and the worker's Prometheus /metrics count notifications by outcome."""
    assert push.client.get("/v1/push/stats", headers=push.service.headers()).status_code == 403
    made = run_ticker(push.service.env, "token", "create", "--name", "ops", "--scopes", "admin")
    admin = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    before = push.client.get("/v1/push/stats", headers=admin).json()["notifications"]
    metrics_before = {p: sent_metric(push, p) for p in PLATFORMS}
    for platform in PLATFORMS:
        register(push, platform, category="arts-culture")
    publish(push, category="arts-culture")
    drain(push)

    def sent(counts: dict[str, dict[str, int]], platform: str) -> int:
        return counts.get(platform, {}).get("sent", 0)

    wait_until(
        lambda: all(
            sent(push.client.get("/v1/push/stats", headers=admin).json()["notifications"], p) == sent(before, p) + 1
            for p in PLATFORMS
        ),
        "the stats to count one more sent notification per platform",
    )
    wait_until(
        lambda: all(sent_metric(push, p) == metrics_before[p] + 1 for p in PLATFORMS),
        "the worker's metrics to count one more sent notification per platform",
    )


def test_dead_tokens_are_removed(push: Setup) -> None:
    """410/400 BadDeviceToken (APNs), 404 UNREGISTERED/400 INVALID_ARGUMENT (FCM), 404/410 (Web Push) remove it."""
    statuses = {"apns": (410, 400), "fcm": (404, 400), "webpush": (410, 404)}
    healthy = {p: register(push, p, category="environment") for p in PLATFORMS}
    dead = {}
    for platform, codes in statuses.items():
        for code in codes:
            device_id, address = register(push, platform, category="environment")
            fake_for(push, platform).script[address] = [code]
            dead[device_id] = (platform, address)
    publish(push, category="environment")
    assert push.service.redis is not None
    with push.service.redis.client() as redis:
        wait_until(lambda: not any(redis.exists(DEVICE + d) for d in dead), "dead devices removed")
        drain(push)
        assert all(redis.exists(DEVICE + device_id) for device_id, _ in healthy.values())
    for platform, (_, address) in healthy.items():
        assert len(fake_for(push, platform).to(address)) == 1
    for platform, address in dead.values():
        assert fake_for(push, platform).attempts[address] == 1 and fake_for(push, platform).to(address) == []


def test_429_and_503_are_retried(push: Setup) -> None:
    """A 429 or 503 (with Retry-After) is tried again and delivered, once."""
    scripted = []
    for platform in PLATFORMS:
        for code in (429, 503):
            _, address = register(push, platform, category="health")
            fake_for(push, platform).script[address] = [code]
            scripted.append((platform, address))
    publish(push, category="health")
    for platform, address in scripted:
        fake = fake_for(push, platform)
        wait_until(lambda f=fake, a=address: len(f.to(a)) == 1, f"{platform} retry delivered")
    drain(push)
    for platform, address in scripted:
        fake = fake_for(push, platform)
        assert fake.attempts[address] == 2 and len(fake.to(address)) == 1, (platform, address)


def test_correction_replaces_and_withdrawal_removes(push: Setup) -> None:
    """A correction carries the same collapse id / tag / Topic; a withdrawal is a data message saying so."""
    devices = {p: register(push, p, category="technology")[1] for p in PLATFORMS}
    doc = publish(push, category="technology")
    fid = flash_id(doc)

    def wait_count(n: int) -> None:
        for platform, address in devices.items():
            fake = fake_for(push, platform)
            wait_until(lambda f=fake, a=address: len(f.to(a)) >= n, f"{platform} message {n}")

    wait_count(1)
    corrected = push.client.patch(
        f"/v1/flashes/{fid}", json={"headline": "BREAKING: corrected"}, headers=push.service.headers()
    )
    assert corrected.status_code == 200
    wait_count(2)
    assert push.client.delete(f"/v1/flashes/{fid}", headers=push.service.headers()).status_code == 200
    wait_count(3)
    drain(push)

    apns = push.fakes.apns.to(devices["apns"])
    assert [m.headers["apns-collapse-id"] for m in apns] == [fid, fid, fid]
    assert apns[1].body["aps"]["alert"]["body"] == "BREAKING: corrected" and apns[1].body["ticker"]["type"] == "update"
    assert apns[2].headers["apns-push-type"] == "background" and apns[2].headers["apns-priority"] == "5"
    assert apns[2].body["aps"] == {"content-available": 1} and apns[2].body["ticker"]["type"] == "withdraw"
    fcm = [m.body for m in push.fakes.fcm.to(devices["fcm"])]
    assert [m["android"]["collapse_key"] for m in fcm] == [fid, fid, fid]
    assert fcm[1]["android"]["notification"]["tag"] == fid and fcm[1]["notification"]["body"] == "BREAKING: corrected"
    assert "notification" not in fcm[2] and fcm[2]["data"]["type"] == "withdraw"
    web = push.fakes.webpush.to(devices["webpush"])
    assert [m.headers["topic"] for m in web] == [fid, fid, fid]
    assert [m.body["type"] for m in web] == ["flash", "update", "withdraw"]
    assert web[1].body["headline"] == "BREAKING: corrected" and web[1].body["version"] == "2"


def test_killed_worker_sends_no_duplicate(push: Setup) -> None:
    """SIGKILL the worker mid-batch and start another: no device gets a second request; only sends that were in
    flight at the kill can be missing."""
    count = 200
    registered = dict(register(push, "webpush", category="sports") for _ in range(count))
    devices = list(registered.values())
    fake = push.fakes.webpush
    fake.delay = 0.05
    try:
        doc = publish(push, category="sports")
        wait_until(lambda: sum(fake.attempts[a] for a in devices) >= 40, "the batch to be under way")
        worker = next(p for p in push.service.processes if p.args[-1] == "worker" and p.proc and p.proc.poll() is None)
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
        before = sum(fake.attempts[a] for a in devices)
        assert before < count, "the batch finished before the kill; the test proves nothing"
        start_worker(push.service, push.tmp, "worker-restarted")
        assert push.service.redis is not None
        with push.service.redis.client() as redis:
            key = f"{SENT_SET}{flash_id(doc)}:1"
            wait_until(lambda: redis.scard(key) == count, "every device claimed", timeout=40)
            drain(push)
            claimed = {m.decode() for m in redis.smembers(key)}
    finally:
        fake.delay = 0.0
    attempted = {a for a in devices if fake.attempts[a] > 0}
    assert max(fake.attempts[a] for a in devices) == 1
    assert claimed == set(registered)
    assert len(set(devices) - attempted) <= CONCURRENCY


def test_fcm_topics_send_once_per_topic(push: Setup) -> None:
    """With TICKER_PUSH_FCM_TOPICS, FCM gets one message for the topic <language>-<category>, none per device;
    the other platforms still get theirs."""
    env = push.fakes.env(push.tmp, (push.tmp / "cli-vapid.pem").read_text())
    (push.tmp / "topics").mkdir()
    service = start_distributed(push.tmp / "topics", TICKER_PUSH_FCM_TOPICS="true", **env)
    try:
        with httpx.Client(base_url=service.base_url, timeout=10) as client:
            topical = Setup(service, push.fakes, client, push.vapid_public, push.tmp / "topics")
            fcm_devices = [register(topical, "fcm", category="miscellaneous")[1] for _ in range(2)]
            _, apns_device = register(topical, "apns", category="miscellaneous")
            doc = publish(topical, category="miscellaneous", language="es-MX")
            wait_until(lambda: len(push.fakes.fcm.to("topic:es-miscellaneous")) == 1, "the topic message")
            wait_until(lambda: len(push.fakes.apns.to(apns_device)) == 1, "the APNs notification")
            drain(topical)
        message = push.fakes.fcm.to("topic:es-miscellaneous")[0].body
        assert message["topic"] == "es-miscellaneous" and message["android"]["collapse_key"] == flash_id(doc)
        assert [len(push.fakes.fcm.to(t)) for t in fcm_devices] == [0, 0]
        assert len(push.fakes.fcm.to("topic:es-miscellaneous")) == 1
    finally:
        service.stop()
