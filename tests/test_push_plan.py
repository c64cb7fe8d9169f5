"""The push plan in slices of index shards: real Redis, ``ticker hub`` and ``ticker worker`` processes, the fakes.

A plan of many steps and jobs sends every device once; a worker killed mid-plan loses no device of it; devices of an
older release's unsharded index are found, then moved into their shards by a worker at start-up.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis

from ticker_service.filters import Filter
from ticker_service.keys import DEVICE_INDEX_PREFIX, DEVICE_INDEX_SHARDS, DEVICE_PREFIX, PUSH_PLAN_PREFIX
from ticker_service.keys import PUSH_PLAN_STATE_PREFIX as STATE
from ticker_service.keys import PUSH_SENT_PREFIX as SENT_SET
from ticker_service.push.device import Device
from ticker_service.push.store import address_key, index_keys, secret_hash, shard_of

from .support.blackhole import BlackHole
from .support.flashes import flash_id
from .support.processes import ServiceFactory, free_port, start_worker, wait_until
from .test_push import CONCURRENCY, PLATFORMS, Setup, drain, fake_for, publish, push_setup, register

STEP = 3  # devices a plan step adds, at least: a plan of ~100 devices takes tens of steps


@pytest.fixture(scope="module")
def sliced(service_factory: ServiceFactory) -> Iterator[Setup]:
    yield from push_setup(
        service_factory,
        "push-plan",
        TICKER_PUSH_PLAN_STEP_DEVICES=str(STEP),
        TICKER_PUSH_BATCH_SIZE="4",
        TICKER_PUSH_PARALLEL_BATCHES="2",
    )


def client(setup: Setup) -> redis.Redis:
    assert setup.service.redis is not None
    return setup.service.redis.client()


def write_unsharded(r: redis.Redis, platform: str, flt: Filter) -> tuple[str, str, str]:
    """A device as the release before the shards stored it (``ticker:devidx:<facet>:<value>``); returns its id,
    address and secret."""
    device_id = secrets.token_hex(16)
    address = secrets.token_hex(32) if platform == "apns" else f"fcm-{secrets.token_urlsafe(40)}"
    secret = secrets.token_urlsafe(24)
    sharded = f"{DEVICE_INDEX_PREFIX}{shard_of(device_id)}:"
    keys = [DEVICE_INDEX_PREFIX + key.removeprefix(sharded) for key in index_keys(flt, device_id)]
    device = Device(device_id, platform, address, flt)
    record = {"d": orjson.dumps(device.to_record()), "s": secret_hash(secret), "ix": orjson.dumps(keys)}
    r.hset(DEVICE_PREFIX + device_id, mapping={**record, "a": address_key(platform, address)})
    r.set(address_key(platform, address), device_id)
    for key in keys:
        r.sadd(key, device_id)
    return device_id, address, secret


def own_metrics() -> dict[str, str]:
    """A second worker's /metrics port (the fixture's worker holds its own)."""
    return {"TICKER_WORKER_METRICS_PORT": str(free_port())}


def unsharded_left(r: redis.Redis) -> int:
    return sum(int(r.scard(f"{DEVICE_INDEX_PREFIX}urg:{u}")) for u in range(1, 10))


def plan_of(r: redis.Redis, doc: dict[str, Any]) -> tuple[int, list[str]]:
    """The event's plan cursor and its planned ids."""
    key = f"{flash_id(doc)}:{doc['version']}"
    cursor = int(r.hget(STATE + key, "cursor") or -2)
    return cursor, [i.decode() for i in r.lrange(PUSH_PLAN_PREFIX + key, 0, -1)]


def test_a_plan_of_many_steps_sends_every_device_once(sliced: Setup) -> None:
    """~100 devices over many shards, planned 3 at a time in batches of 4 (and devices still in an older release's
    unsharded index): each matching device gets one notification, the others none, and the plan lists each once.
    A worker started later moves the unsharded devices into their shards; they keep working through the API."""
    matching = {p: [register(sliced, p, category="politics") for _ in range(30)] for p in PLATFORMS}
    others = {p: register(sliced, p, category="economy") for p in PLATFORMS}
    politics = Filter(categories=("politics",), max_urgency=2)
    with client(sliced) as r:
        old = {platform: [write_unsharded(r, platform, politics) for _ in range(4)] for platform in ("fcm", "apns")}
        doc = publish(sliced, category="politics", urgency=1)
        everyone = [(p, a) for p, ds in matching.items() for _, a in ds] + [
            (p, a) for p, ds in old.items() for _, a, _ in ds
        ]
        for platform, address in everyone:
            fake = fake_for(sliced, platform)
            wait_until(lambda f=fake, a=address: len(f.to(a)) >= 1, f"{platform} notification to {address}")
        drain(sliced)
        assert [len(fake_for(sliced, p).to(a)) for p, a in everyone] == [1] * len(everyone)
        assert [len(fake_for(sliced, p).to(a)) for p, (_, a) in others.items()] == [0, 0, 0]
        cursor, planned = plan_of(r, doc)
        ids = {i for ds in matching.values() for i, _ in ds} | {i for ds in old.values() for i, _, _ in ds}
        assert cursor == DEVICE_INDEX_SHARDS and sorted(planned) == sorted(ids)  # each once
        assert len({shard_of(i) for i in ids}) > 30  # many shards, so many steps of at least 3 devices
        assert unsharded_left(r) == 8  # the worker started before they were written: not moved yet

        start_worker(sliced.service, sliced.tmp, "worker-upgraded", extra_env=own_metrics())
        wait_until(lambda: unsharded_left(r) == 0, "the unsharded devices moved to their shards")
        assert "8 devices are in the unsharded index" in (sliced.tmp / "worker-upgraded.log").read_text()
        for device_id, _, _ in old["fcm"] + old["apns"]:
            keys = orjson.loads(r.hget(DEVICE_PREFIX + device_id, "ix") or b"[]")
            assert keys == index_keys(politics, device_id)
            assert all(r.sismember(key, device_id) for key in keys)
        assert not r.keys(f"{DEVICE_INDEX_PREFIX}lang:*") and not r.keys(f"{DEVICE_INDEX_PREFIX}cat:*")

        moved_id, moved_address, moved_secret = old["fcm"][0]
        auth = {"Authorization": f"Bearer {moved_secret}"}
        body = {"platform": "fcm", "token": moved_address, "category": "politics,sports", "max_urgency": 2}
        assert sliced.client.put(f"/v1/devices/{moved_id}", json=body, headers=auth).status_code == 200
        gone_id, _, gone_secret = old["apns"][0]
        headers = {"Authorization": f"Bearer {gone_secret}"}
        assert sliced.client.delete(f"/v1/devices/{gone_id}", headers=headers).status_code == 204
        assert not any(r.sismember(key, gone_id) for key in r.keys(f"{DEVICE_INDEX_PREFIX}*"))
        publish(sliced, category="sports", urgency=1)
        wait_until(lambda: len(sliced.fakes.fcm.to(moved_address)) == 2, "the updated device's sports flash")
        drain(sliced)
        assert len(sliced.fakes.apns.to(old["apns"][0][1])) == 1


def test_worker_killed_mid_plan_loses_nothing(sliced: Setup) -> None:
    """The worker is cut off from Redis and SIGKILLed while the plan is part-way through its shards; another worker
    finishes it: every device is planned once and claimed, none is sent twice, and only sends in flight at the kill
    can be missing."""
    devices = dict(register(sliced, PLATFORMS[n % 3], category="sports", max_urgency=3) for n in range(240))
    addresses = {p: [a for i, a in devices.items() if i in ids] for p, ids in _by_platform(sliced, devices).items()}
    with client(sliced) as r, BlackHole(sliced.service.redis.port) as hole:  # type: ignore[union-attr]
        for process in sliced.service.processes:
            if process.args[-1] == "worker" and process.proc and process.proc.poll() is None:
                process.stop()
        holed = {"REDIS_URL": hole.url, **own_metrics()}
        worker = start_worker(sliced.service, sliced.tmp, "worker-holed", extra_env=holed)
        doc = publish(sliced, category="sports", urgency=3)
        wait_until(lambda: 10 <= plan_of(r, doc)[0] < DEVICE_INDEX_SHARDS, "the plan to be under way")
        hole.partition("drop")
        cursor_at_kill, planned_at_kill = plan_of(r, doc)
        assert cursor_at_kill < DEVICE_INDEX_SHARDS, "the plan finished before the kill; the test proves nothing"
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
        start_worker(sliced.service, sliced.tmp, "worker-after-kill", extra_env=own_metrics())
        key = f"{SENT_SET}{flash_id(doc)}:{doc['version']}"
        wait_until(lambda: r.scard(key) == len(devices), "every device claimed", timeout=60)
        drain(sliced)
        cursor, planned = plan_of(r, doc)
        claimed = {m.decode() for m in r.smembers(key)}
    assert cursor == DEVICE_INDEX_SHARDS and len(planned_at_kill) < len(devices)
    assert sorted(planned) == sorted(devices) and claimed == set(devices)
    attempts = {a: fake_for(sliced, p).attempts[a] for p, group in addresses.items() for a in group}
    assert max(attempts.values()) == 1
    assert sum(1 for n in attempts.values() if n == 0) <= CONCURRENCY


def _by_platform(setup: Setup, devices: dict[str, str]) -> dict[str, set[str]]:
    with client(setup) as r:
        raw = {i: r.hget(DEVICE_PREFIX + i, "d") for i in devices}
    out: dict[str, set[str]] = {p: set() for p in PLATFORMS}
    for device_id, record in raw.items():
        assert record is not None
        out[orjson.loads(record)["platform"]].add(device_id)
    return out
