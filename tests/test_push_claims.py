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

ALERT = Alert("flash", "f1", "1", "e-1-0", "BREAKING", "en", "ltr", 1, "politics", None, 600, 0)
DEVICE = Device("d1", "apns", "ab" * 32, Filter())


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
