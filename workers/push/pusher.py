"""What the push jobs of one worker process share (:class:`Pusher`), and the claim that makes a send at most once.

Right before its request goes out, a send claims the device in the event's set (``SADD``: only the first claim
wins) and counts it against the device's hourly cap; a send that certainly did not reach the service gives both
back. The cap counts stories (the collapse id: the story, else the flash), not versions: the device's hourly hash
holds one field per story notified, so a correction, a second language version or a follow-up flash of a story
counts once (a correction of a story the device was capped on is capped too). Withdrawals never count and are
never refused; a FLASH (urgency 1) counts but is never refused (alert discipline with a breaking-news bypass, as
Airship's ``bypass_frequency_limits``). Both steps are Lua
scripts, their KEYS and ARGV written as named tables as the broker's are (:mod:`ticker_service.broker.redis_scripts`);
the claims of the sends that start in one turn of the event loop are one script call (one round trip for a window of
sends, not one per device).
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
    hour: str  # the device's hash for this hour: collapse id -> the event ("<flash>:<version>") that counted it


class ClaimManyKeys(NamedTuple):
    sent: str  # the event's set of claimed device ids; KEYS[2..] are the devices' hourly hashes (ClaimKeys.hour)


class ClaimArgs(NamedTuple):
    sent_ttl: int  # seconds the claim set lives: the notification's TTL and an hour
    hourly_cap: int  # stories notified per device and hour
    counts: str  # '1' counts, capped; '2' a FLASH: counts, never capped; '0' a withdrawal: neither
    story: str  # the collapse id the count is kept under
    event: str  # "<flash id>:<version>": which claim counted the story, so only it gives the count back


# Claims the devices of one event in one call (the sends that start in one turn of the worker's event loop): one
# round trip to Redis for a window of sends instead of one each. ARGV[6..] are the device ids, KEYS[i + 1] the hour
# hash of ARGV[i + 5]; the answer is one of 'ok', 'duplicate', 'capped' per device, in order.
CLAIM = """
-- KEYS[1] = sent
-- ARGV[1] = sent_ttl, ARGV[2] = hourly_cap, ARGV[3] = counts, ARGV[4] = story, ARGV[5] = event
local out = {}
for i = 1, #ARGV - 5 do
  local hour = KEYS[i + 1]
  if redis.call('SADD', KEYS[1], ARGV[i + 5]) == 0 then
    out[i] = 'duplicate'
  else
    out[i] = 'ok'
    if ARGV[3] ~= '0' and redis.call('HEXISTS', hour, ARGV[4]) == 0 then
      if ARGV[3] == '1' and redis.call('HLEN', hour) >= tonumber(ARGV[2]) then
        out[i] = 'capped'
      else
        redis.call('HSET', hour, ARGV[4], ARGV[5])
        redis.call('EXPIRE', hour, 3700)
      end
    end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return out
"""


class ReleaseArgs(NamedTuple):
    device_id: str
    story: str  # the collapse id
    event: str  # "<flash id>:<version>": the story's count is given back only if this event made it


RELEASE = """
-- KEYS[1] = sent, KEYS[2] = hour
-- ARGV[1] = device_id, ARGV[2] = story, ARGV[3] = event
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
"""

# name -> (source, KEYS table, ARGV table), for the checks in tests/unit/test_redis_scripts.py
SCRIPTS: dict[str, tuple[str, type[tuple[Any, ...]], type[tuple[Any, ...]]]] = {
    "claim": (CLAIM, ClaimManyKeys, ClaimArgs),
    "release": (RELEASE, ClaimKeys, ReleaseArgs),
}


def _counts(alert: Alert) -> str:
    """How a send counts against the hourly cap (once per story): a withdrawal not at all; a FLASH counts but always
    goes through."""
    if alert.kind == "withdraw":
        return "0"
    return "2" if alert.urgency == 1 else "1"


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
        # Claims asked for in one turn of the event loop, by event: run together as one script call.
        self._pending: dict[tuple[str, ClaimArgs], list[tuple[str, str, asyncio.Future[str]]]] = {}
        self._flushing: set[asyncio.Task[None]] = set()

    def _keys(self, alert: Alert, device: Device) -> list[Any]:
        hour = int(time.time() // 3600)
        sent = f"{PUSH_SENT_PREFIX}{alert.claim or f'{alert.flash_id}:{alert.version}'}"
        return positional(ClaimKeys(sent=sent, hour=f"{PUSH_DEVICE_HOUR_PREFIX}{device.id}:{hour}"))

    async def claim(self, alert: Alert, device: Device) -> str:
        """``ok``, ``duplicate`` (claimed before) or ``capped`` (the device had its stories this hour).

        The claim is queued and made, with every other claim asked for in this turn of the event loop, by one
        script call at the end of the turn: still right before this device's request, never ahead of it."""
        keys = self._keys(alert, device)
        args = ClaimArgs(
            alert.ttl + 3600,
            self.settings.max_per_device_hour,
            _counts(alert),
            alert.collapse_id,
            f"{alert.flash_id}:{alert.version}",
        )
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush_claims)
        future: asyncio.Future[str] = loop.create_future()
        self._pending.setdefault((keys[0], args), []).append((device.id, keys[1], future))
        return await future

    def _flush_claims(self) -> None:
        pending, self._pending = self._pending, {}
        for (sent, args), claims in pending.items():
            task = asyncio.ensure_future(self._claim_many(sent, args, claims))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _claim_many(self, sent: str, args: ClaimArgs, claims: list[tuple[str, str, asyncio.Future[str]]]) -> None:
        keys = [*positional(ClaimManyKeys(sent)), *(hour for _, hour, _ in claims)]
        try:
            results = await self._claim(keys=keys, args=[*positional(args), *(device for device, _, _ in claims)])
        except Exception as exc:
            for _, _, future in claims:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), result in zip(claims, results, strict=True):
            if not future.done():
                future.set_result(result.decode() if isinstance(result, bytes) else str(result))

    async def release(self, alert: Alert, device: Device) -> None:
        args = ReleaseArgs(device.id, alert.collapse_id, f"{alert.flash_id}:{alert.version}")
        await self._release(keys=self._keys(alert, device), args=positional(args))

    async def aclose(self) -> None:
        for bridge in self.bridges.values():
            await bridge.aclose()
