"""Counts per key and minute (a fixed one-minute window): writes per editor token (``TICKER_PUBLISH_RATE_PER_MINUTE``)
and failed authentications per client address (``TICKER_FAILED_AUTH_PER_MINUTE``).

In Redis the count is shared by every hub (``INCR`` on a key per token and minute, expiring with the minute);
in the embedded mode it lives in the process.
"""

from __future__ import annotations

import time
from typing import Protocol

from redis.asyncio import Redis

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..keys import RATE_PREFIX

WINDOW = 60


class RateLimiter(Protocol):
    async def hit(self, key: str) -> tuple[int, float]:
        """Count one event for ``key``: how many this window has had, and the seconds until the next window."""
        ...


def window_key(key: str, start: int) -> str:
    """The Redis key counting ``key`` in the window starting at ``start`` (also counted by the token lookup)."""
    return f"{RATE_PREFIX}{key}:{start}"


def window(now: float) -> tuple[int, float]:
    start = int(now // WINDOW) * WINDOW
    return start, start + WINDOW - now


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window start, count)

    async def hit(self, key: str) -> tuple[int, float]:
        start, left = window(time.time())
        if len(self._counts) > 10_000:  # forget finished windows now and then
            self._counts = {k: v for k, v in self._counts.items() if v[0] == start}
        seen, count = self._counts.get(key, (start, 0))
        count = count + 1 if seen == start else 1
        self._counts[key] = (start, count)
        return count, left


class RedisRateLimiter:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def hit(self, key: str) -> tuple[int, float]:
        start, left = window(time.time())
        name = window_key(key, start)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, WINDOW + 5)
                count, _ = await pipe.execute()
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return int(count), left
