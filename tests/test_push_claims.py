"""The per-(event, device) claim and the per-device hourly cap, on a real private Redis."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from redis.asyncio import Redis

from ticker_service.filters import Filter
from ticker_service.push.device import Device
from ticker_service.push.settings import PushSettings
from ticker_service.push.store import DeviceStore
from workers.push.payload import Alert
from workers.push.pusher import Pusher

from .support.processes import RedisServer

ALERT = Alert("flash", "f1", "1", "e-1-0", "BREAKING", "en", "ltr", 2, "politics", None, 600, 0)
DEVICE = Device("d1", "apns", "ab" * 32, Filter())
PHONE = Device("d9", "fcm", "fcm-token", Filter())


async def test_claims(redis_server: RedisServer) -> None:
    """A device is claimed once per event; new flashes past the hourly cap are refused, corrections never are;
    a released claim can be taken again."""
    async with Redis.from_url(redis_server.url) as redis:
        settings = PushSettings(max_per_device_hour=2)
        pusher = Pusher(settings, {}, redis, DeviceStore(redis), asyncio.Semaphore(1), 1.0, 1.0, 1.0)
        assert await pusher.claim(ALERT, DEVICE) == "ok"
        assert await pusher.claim(ALERT, DEVICE) == "duplicate"
        assert await pusher.claim(replace(ALERT, flash_id="f2"), DEVICE) == "ok"
        assert await pusher.claim(replace(ALERT, flash_id="f3"), DEVICE) == "capped"
        assert await pusher.claim(replace(ALERT, kind="update", version="2"), DEVICE) == "ok"
        assert await pusher.claim(replace(ALERT, flash_id="f3"), replace(DEVICE, id="d2")) == "ok"
        await pusher.release(replace(ALERT, flash_id="f2"), DEVICE)
        assert await pusher.claim(replace(ALERT, flash_id="f4"), DEVICE) == "ok"
        assert 0 < await redis.ttl("ticker:pushed:f1:1") <= 600 + 3600


async def test_cap_counts_stories_and_a_flash_goes_through(redis_server: RedisServer) -> None:
    """The cap counts stories, not versions: a correction of a notified story does not count again, one of a capped
    story is capped too; a withdrawal always goes; a FLASH (urgency 1) is never capped but counts; a release gives
    the count back only if that claim made it."""
    async with Redis.from_url(redis_server.url) as redis:
        settings = PushSettings(max_per_device_hour=2)
        pusher = Pusher(settings, {}, redis, DeviceStore(redis), asyncio.Semaphore(1), 1.0, 1.0, 1.0)
        quake_en = replace(ALERT, flash_id="q-en", story="quake")
        quake_ar = replace(ALERT, flash_id="q-ar", story="quake")
        assert await pusher.claim(quake_en, PHONE) == "ok"
        assert await pusher.claim(quake_ar, PHONE) == "ok"  # the same story: counted once
        assert await pusher.claim(replace(ALERT, flash_id="g1"), PHONE) == "ok"  # the second story
        assert await pusher.claim(replace(ALERT, flash_id="g2"), PHONE) == "capped"
        assert await pusher.claim(replace(ALERT, flash_id="g2", kind="update", version="2"), PHONE) == "capped"
        assert await pusher.claim(replace(ALERT, flash_id="g2", kind="withdraw", version="3"), PHONE) == "ok"
        flash = replace(ALERT, flash_id="g3", urgency=1)
        assert await pusher.claim(flash, PHONE) == "ok"  # a FLASH goes through the cap
        assert await pusher.claim(replace(quake_en, kind="update", version="2"), PHONE) == "ok"
        hour = (await redis.keys("ticker:pushstories:d9:*"))[0]
        assert await redis.hgetall(hour) == {b"quake": b"q-en:1", b"g1": b"g1:1", b"g3": b"g3:1"}
        await pusher.release(quake_ar, PHONE)  # q-ar did not count the story: the count stays
        assert await redis.hlen(hour) == 3
        await pusher.release(flash, PHONE)
        assert await redis.hgetall(hour) == {b"quake": b"q-en:1", b"g1": b"g1:1"}
        assert 3600 < await redis.ttl(hour) <= 3700


async def test_claims_of_one_loop_turn_are_one_call(redis_server: RedisServer) -> None:
    """Claims asked for together go to Redis as one script call, and each device gets its own answer: the capped
    one, the one claimed before, and a device asked for twice in the same call (the second is the duplicate)."""
    async with Redis.from_url(redis_server.url) as redis:
        pusher = Pusher(
            PushSettings(max_per_device_hour=1), {}, redis, DeviceStore(redis), asyncio.Semaphore(1), 1, 1, 1
        )
        alert = replace(ALERT, flash_id="together")
        assert await pusher.claim(replace(ALERT, flash_id="before"), replace(DEVICE, id="t0")) == "ok"
        assert await pusher.claim(alert, replace(DEVICE, id="t1")) == "ok"
        calls: list[int] = []
        script = pusher._claim

        async def counted(**kwargs: list[str]) -> object:
            calls.append(len(kwargs["args"]))
            return await script(**kwargs)

        pusher._claim = counted  # type: ignore[assignment, method-assign]
        devices = [replace(DEVICE, id=f"t{i}") for i in range(40)] + [replace(DEVICE, id="t5")]
        results = await asyncio.gather(*(pusher.claim(alert, device) for device in devices))
        assert results[:2] == ["capped", "duplicate"]
        assert results[2:40] == ["ok"] * 38
        assert results[40] == "duplicate"
        assert calls == [5 + 41]
