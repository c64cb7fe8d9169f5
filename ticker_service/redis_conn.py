"""Every Redis connection of the service, direct (``REDIS_URL``) or through Redis Sentinel.

With ``TICKER_REDIS_SENTINELS`` set, clients ask the sentinels for the current master of
``TICKER_REDIS_SENTINEL_MASTER`` and ask again whenever a connection fails, so hubs, workers and the token store
follow a failover without a restart. ``REDIS_URL`` may still give the database number and password then; its host
is not used.

A connection that hangs without an error (a silent partition: no RST, no FIN, packets lost) must not hang the
service with it: every command has ``TICKER_REDIS_TIMEOUT_SECONDS`` to answer, and a subscription, which sends
nothing of its own, is watched by :func:`watched_messages` (a PING when it has been quiet for half that, dead when
the answer does not come in time). TCP keepalive would take minutes and does not see a stall behind a proxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.sentinel import Sentinel
from redis.connection import parse_url
from redis.exceptions import TimeoutError as RedisTimeoutError

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


def redis_client(settings: Settings, redis_class: type[Redis] = Redis, **options: Any) -> Any:
    """A client (``redis.asyncio.Redis``, or ``redis_class``) of the current master: ``REDIS_URL``'s server, or the
    one the sentinels name, whose commands time out after ``TICKER_REDIS_TIMEOUT_SECONDS`` unless ``options`` say
    otherwise. Typed ``Any`` like redis-py's own ``Redis.from_url``, whose command methods are typed for both APIs."""
    timeout = settings.redis_timeout_seconds
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, **options}
    if settings.redis_sentinels:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinel_addresses(settings),
            sentinel_kwargs={
                "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
                "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            },
        )
        return sentinel.master_for(
            settings.redis_sentinel_master, redis_class=redis_class, **{**_url_options(settings), **options}
        )
    assert settings.redis_url, "no REDIS_URL or TICKER_REDIS_SENTINELS"
    return redis_class.from_url(settings.redis_url, **options)


def arq_redis(settings: Settings) -> ArqRedis:
    """arq's pool for a worker, made here rather than by arq: arq's own has no command timeout, so a silent
    partition would stop its polling for good instead of failing it (and the worker starting again)."""
    pool: ArqRedis = redis_client(settings, redis_class=ArqRedis, encoding="utf8")
    return pool


async def watched_messages(pubsub: PubSub, timeout: float) -> AsyncGenerator[dict[str, Any], None]:
    """Everything a subscription receives (messages, subscribe confirmations, pongs), until it goes silent.

    After ``timeout / 2`` without a byte it sends a PING; if nothing at all comes back within ``timeout`` of
    silence, it raises redis' ``TimeoutError``, and the caller reconnects. redis-py's own ``health_check_interval``
    only *sends* its PING and never misses the answer (redis/redis-py#2417). Time the consumer spends between two
    messages does not count as silence. The pubsub must not ignore subscribe messages (their arrival is a sign of
    life too).
    """
    loop = asyncio.get_running_loop()
    silent = 0.0
    pinged = False
    while True:
        started = loop.time()
        message = await pubsub.get_message(timeout=max((timeout if pinged else timeout / 2) - silent, 0.001))
        if message is not None:
            silent, pinged = 0.0, False
            yield message
            continue
        silent += loop.time() - started
        if pinged and silent >= timeout:
            raise RedisTimeoutError(f"the subscription was silent for {silent:.1f}s, a PING unanswered")
        if not pinged and silent >= timeout / 2:
            await pubsub.ping()
            pinged = True


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
