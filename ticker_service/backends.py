"""Redis or memory: decided once, when the app is built, and handed around as one :class:`Backends` value.

With ``REDIS_URL`` (or sentinels) the broker, editor tokens, audit log, rate limits and device registry all live in
Redis, shared by every hub, on the broker's connection. Embedded, they live in this process (tokens in the data
directory's file) and there is no device registry: push needs Redis and a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from .broker import Broker
from .push.store import DeviceStore
from .security.audit import AuditLog, MemoryAuditLog, RedisAuditLog
from .security.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from .security.tokens import FileTokenStore, RedisTokenStore, TokenStore
from .settings import Settings


@dataclass(frozen=True, slots=True)
class Backends:
    broker: Broker
    redis: Redis | None  # the broker's connection, shared by the stores below; None in the embedded mode
    tokens: TokenStore
    audit: AuditLog
    rate_limiter: RateLimiter
    devices: DeviceStore | None  # None in the embedded mode


def create_backends(settings: Settings, broker: Broker | None = None) -> Backends:
    """The backends for ``settings``; ``broker``, when given, is one made for the same settings (tests)."""
    if settings.embedded:
        from .broker.memory import MemoryBroker

        return Backends(
            # Flashes waiting for an embargo or an approval outlive a restart in the data directory.
            broker=broker or MemoryBroker(settings, withheld_path=settings.data_dir / "withheld.json"),
            redis=None,
            tokens=FileTokenStore(settings.data_dir),
            audit=MemoryAuditLog(settings.audit_max_entries),
            rate_limiter=MemoryRateLimiter(),
            devices=None,
        )
    from .broker.redis import RedisBroker

    # The settings chose Redis, so a broker made for them (create_broker) is a RedisBroker.
    redis_broker = cast(RedisBroker, broker) if broker is not None else RedisBroker(settings)
    redis = redis_broker.redis
    return Backends(
        broker=redis_broker,
        redis=redis,
        tokens=RedisTokenStore(redis, redis_broker.scripts),
        audit=RedisAuditLog(redis, settings.audit_max_entries),
        rate_limiter=RedisRateLimiter(redis),
        devices=DeviceStore(redis),
    )
