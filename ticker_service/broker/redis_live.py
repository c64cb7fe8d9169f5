"""The Redis broker's live side: publish in stream order, hold the subscription, catch up after each reconnect.

Pub/sub is at most once, so the subscription alone would lose what was published while a hub was not subscribed.
The listener subscribes first, then hands the handlers what the history recorded since the last event they got; the
handlers drop event ids they already have, so the overlap with live messages is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from ..events import Event, event_key, make_event_id, split_event_id
from ..keys import EVENTS_STREAM, HISTORY_EPOCH, LIVE_CHANNEL, PUBLISHED_CURSOR
from ..ops import metrics
from ..redis_conn import redis_client, watched_messages
from ..settings import Settings
from .base import LiveHandler
from .redis_scripts import PUBLISH, PublishArgs, PublishKeys, positional

logger = logging.getLogger("ticker.broker")

# Backoff between attempts to subscribe again, jittered ×0.5–1.5: short, because a hub without its subscription
# is not ready, and one attempt every few seconds per hub costs Redis nothing.
RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 2.0

# Runs one Redis operation, turning "Redis is down" into BrokerUnavailable (the store side's ``RedisBroker._call``).
Call = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


def event_from_entry(epoch: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
    """The event a history stream entry holds, with its id in ``epoch``."""
    position = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Event(make_event_id(epoch, position), fields[b"t"].decode(), orjson.loads(fields[b"d"]))  # type: ignore[arg-type]


class RedisLive:
    """Live delivery for :class:`~ticker_service.broker.redis.RedisBroker`, which delegates its live methods here."""

    def __init__(self, settings: Settings, redis: Redis, call: Call) -> None:
        self.settings = settings
        self._call = call
        self._publish = redis.register_script(PUBLISH)
        self._handlers: list[LiveHandler] = []
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set while subscribed and caught up
        self._position: str | None = None  # the last event handed to the handlers, live or by catch-up
        self._lost_callbacks: list[Callable[[], None]] = []

    def start(self) -> None:
        if self._handlers and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="ticker-redis-listener")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass

    def receiving(self) -> bool:
        """False while this process has handlers but no subscription (yet, or since it was lost)."""
        return not self._handlers or self.subscribed.is_set()

    async def publish(self, event: Event) -> int:
        keys = PublishKeys(events=EVENTS_STREAM, published=PUBLISHED_CURSOR, epoch=HISTORY_EPOCH)
        args = PublishArgs(target=split_event_id(event.event_id)[1], live_channel=LIVE_CHANNEL)
        sent = await self._call(lambda: self._publish(keys=positional(keys), args=positional(args)))
        return int(sent)

    def subscribe(self, handler: LiveHandler) -> None:
        self._handlers.append(handler)

    def on_history_lost(self, callback: Callable[[], None]) -> None:
        self._lost_callbacks.append(callback)

    async def _listen(self) -> None:
        """Hold the pub/sub subscription; reconnect with jittered backoff when Redis goes away or goes silent.

        ``subscribed`` (and with it ``/readyz``) is set once the subscription is confirmed and the history caught
        up, and cleared as soon as the subscription fails: within ``TICKER_REDIS_TIMEOUT_SECONDS`` of silence.
        """
        delay = RECONNECT_FIRST_SECONDS
        timeout = self.settings.redis_timeout_seconds
        while True:
            client = redis_client(self.settings)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(LIVE_CHANNEL)
                async with contextlib.aclosing(watched_messages(pubsub, timeout)) as messages:
                    async for message in messages:
                        if message["type"] == "message":
                            self._dispatch(message["data"])
                        elif message["type"] == "subscribe":
                            # Messages published from now on wait in the subscription while the history fills the gap.
                            await self._catch_up(client)
                            self.subscribed.set()
                            delay = RECONNECT_FIRST_SECONDS
                            logger.info("subscribed to %s", LIVE_CHANNEL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the subscription: reconnect, never die
                logger.warning("live subscription lost (%s); reconnecting in %.1fs", exc, delay)
                metrics.REDIS_RECONNECTS.labels("hub").inc()
            finally:
                self.subscribed.clear()
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # closing a broken connection may fail too; nothing to do
                    pass
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _catch_up(self, client: Redis) -> None:
        """Hand the handlers what the history recorded since the last event they got (or, at start, its tail).

        Pub/sub is at most once: whatever was published while this process was not subscribed is only in the
        stream. Handlers drop event ids they already have, so overlap with the live messages is harmless.
        """
        raw_epoch = await client.get(HISTORY_EPOCH)
        epoch = raw_epoch.decode() if raw_epoch else ""
        if self._position is None:
            tail = await client.xrevrange(EVENTS_STREAM, count=self.settings.replay_max_events)
            for entry_id, fields in reversed(tail):
                self._deliver(event_from_entry(epoch, entry_id, fields))
            if not tail:
                self._position = make_event_id(epoch or "0", "0-0")
            return
        seen_epoch, position = split_event_id(self._position)
        if seen_epoch != epoch:
            logger.warning("history epoch changed (%s → %s): the history was lost", seen_epoch, epoch)
            position = "0-0"
            for callback in self._lost_callbacks:
                callback()
        while True:
            entries = await client.xrange(EVENTS_STREAM, min="(" + position, count=500)
            if not entries:
                return
            logger.info("catching up %d events after %s", len(entries), position)
            for entry_id, fields in entries:
                self._deliver(event_from_entry(epoch, entry_id, fields))
            position = split_event_id(self._position)[1]

    def _dispatch(self, raw: bytes) -> None:
        try:
            event = Event.from_message(raw)
        except (ValueError, KeyError):
            logger.error("dropping malformed live message: %r", raw[:200])
            return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if (
            self._position is None
            or split_event_id(event.event_id)[0] != split_event_id(self._position)[0]
            or event_key(event.event_id) > event_key(self._position)
        ):
            self._position = event.event_id
        for handler in self._handlers:
            handler(event)
