"""What the push jobs of one worker process share (:class:`Pusher`), and the claim that makes a send at most once.

Right before its request goes out, a send claims the device in the event's set (``SADD``: only the first claim
wins) and counts it against the device's hourly cap; a send that certainly did not reach the service gives both
back. Both steps are Lua scripts, their KEYS and ARGV written as named tables as the broker's are
(:mod:`ticker_service.broker.redis_scripts`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.asyncio import Redis

from ticker_service.broker.redis_scripts import positional
from ticker_service.keys import PUSH_DEVICE_HOUR_PREFIX, PUSH_SENT_PREFIX
from ticker_service.push.device import Device
from ticker_service.push.settings import PushSettings
from ticker_service.push.store import DeviceStore

from .base import Bridge
from .payload import Alert


class ClaimKeys(NamedTuple):
    sent: str  # the event's set of claimed device ids
    hour: str  # the device's counter for this hour


class ClaimArgs(NamedTuple):
    device_id: str
    sent_ttl: int  # seconds the claim set lives: the notification's TTL and an hour
    hourly_cap: int  # notifications per device and hour
    counts: str  # '1' when this send counts against the cap (a flash); '0' for a correction or withdrawal


CLAIM = """
-- KEYS[1] = sent, KEYS[2] = hour
-- ARGV[1] = device_id, ARGV[2] = sent_ttl, ARGV[3] = hourly_cap, ARGV[4] = counts
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 'duplicate' end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[4] == '1' then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then redis.call('EXPIRE', KEYS[2], 3700) end
  if n > tonumber(ARGV[3]) then
    redis.call('DECR', KEYS[2])
    return 'capped'
  end
end
return 'ok'
"""


class ReleaseArgs(NamedTuple):
    device_id: str
    counts: str  # '1' when the claim counted against the cap: the count is given back too


RELEASE = """
-- KEYS[1] = sent, KEYS[2] = hour
-- ARGV[1] = device_id, ARGV[2] = counts
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and ARGV[2] == '1' then redis.call('DECR', KEYS[2]) end
return 1
"""

# name -> (source, KEYS table, ARGV table), for the checks in tests/unit/test_redis_scripts.py
SCRIPTS: dict[str, tuple[str, type[tuple[Any, ...]], type[tuple[Any, ...]]]] = {
    "claim": (CLAIM, ClaimKeys, ClaimArgs),
    "release": (RELEASE, ClaimKeys, ReleaseArgs),
}


@dataclass
class Pusher:
    """What push jobs share in one worker process: bridges and their HTTP/2 clients, and the concurrency bound."""

    settings: PushSettings
    bridges: dict[str, Bridge]
    redis: Redis
    store: DeviceStore
    semaphore: asyncio.Semaphore
    budget: float  # seconds of a job during which new sends may start
    send_timeout: float  # longest one send may take (claim to answer)
    hard_stop: float  # seconds into a job when sends still running are cut off

    def __post_init__(self) -> None:
        self._claim = self.redis.register_script(CLAIM)
        self._release = self.redis.register_script(RELEASE)

    def _keys(self, alert: Alert, device: Device) -> list[Any]:
        hour = int(time.time() // 3600)
        sent = f"{PUSH_SENT_PREFIX}{alert.claim or f'{alert.flash_id}:{alert.version}'}"
        return positional(ClaimKeys(sent=sent, hour=f"{PUSH_DEVICE_HOUR_PREFIX}{device.id}:{hour}"))

    async def claim(self, alert: Alert, device: Device) -> str:
        counts = "1" if alert.kind == "flash" else "0"  # a correction or withdrawal always gets through
        args = ClaimArgs(device.id, alert.ttl + 3600, self.settings.max_per_device_hour, counts)
        result = await self._claim(keys=self._keys(alert, device), args=positional(args))
        return result.decode() if isinstance(result, bytes) else str(result)

    async def release(self, alert: Alert, device: Device) -> None:
        counts = "1" if alert.kind == "flash" else "0"
        await self._release(keys=self._keys(alert, device), args=positional(ReleaseArgs(device.id, counts)))

    async def aclose(self) -> None:
        for bridge in self.bridges.values():
            await bridge.aclose()
