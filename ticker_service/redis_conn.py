"""Every Redis connection of the service, direct (``REDIS_URL``) or through Redis Sentinel.

With ``TICKER_REDIS_SENTINELS`` set, clients ask the sentinels for the current master of
``TICKER_REDIS_SENTINEL_MASTER`` and ask again whenever a connection fails, so hubs, workers and the token store
follow a failover without a restart. ``REDIS_URL`` may still give the database number and password then; its host
is not used.
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url

from .settings import Settings

SENTINEL_TIMEOUT_SECONDS = 1.0


def sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    addresses = []
    for item in settings.redis_sentinels:
        host, _, port = item.rpartition(":")
        addresses.append((host.strip("[]") or "127.0.0.1", int(port)))
    return addresses


def _url_options(settings: Settings) -> dict[str, Any]:
    """Database, credentials and TLS from ``REDIS_URL``, without its host (the sentinels name the master)."""
    if not settings.redis_url:
        return {}
    options: dict[str, Any] = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]
    for key in ("host", "port", "path", "connection_class"):
        options.pop(key, None)
    return options


def redis_client(settings: Settings, **options: Any) -> Any:
    """A client (``redis.asyncio.Redis``) of the current master: ``REDIS_URL``'s server, or the one the sentinels
    name. Typed ``Any`` like redis-py's own ``Redis.from_url``, whose command methods are typed for both APIs."""
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinel_addresses(settings),
            sentinel_kwargs={
                "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
                "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            },
        )
        return sentinel.master_for(
            settings.redis_sentinel_master, redis_class=Redis, **{**_url_options(settings), **options}
        )
    assert settings.redis_url, "no REDIS_URL or TICKER_REDIS_SENTINELS"
    return Redis.from_url(settings.redis_url, **options)


def arq_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings for the same Redis (arq supports sentinels itself)."""
    if settings.redis_sentinels:
        url = _url_options(settings)
        return RedisSettings(
            host=sentinel_addresses(settings),
            sentinel=True,
            sentinel_master=settings.redis_sentinel_master,
            database=int(url.get("db") or 0),
            username=url.get("username"),
            password=url.get("password"),
        )
    assert settings.redis_url, "no REDIS_URL or TICKER_REDIS_SENTINELS"
    return RedisSettings.from_dsn(settings.redis_url)


def describe(settings: Settings) -> str:
    """Where Redis is, for messages (no password)."""
    if settings.redis_sentinels:
        return f"sentinels {','.join(settings.redis_sentinels)} (master {settings.redis_sentinel_master!r})"
    return str(settings.redis_url).split("@")[-1]
