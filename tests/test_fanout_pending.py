"""The Redis fan-out without an arq job per flash (``broker/redis.py``, ``workers/fanout.py``): record leaves each
event pending, wakes the workers once and queues one safety-net job; a woken worker publishes every pending event in
one call. At least once: events stay pending until their fan-out is done, and a repeat publishes nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from ticker_service.broker.redis import RedisBroker
from ticker_service.events import Event
from ticker_service.flashes import FlashIn, flash_id_of, new_document
from ticker_service.keys import (
    ARQ_JOB_PREFIX,
    ARQ_QUEUE,
    FANOUT_PENDING,
    FANOUT_QUEUED,
    LIVE_CHANNEL,
    WAKE_CHANNEL,
)
from ticker_service.settings import Settings

from .support.processes import RedisServer

END = b"end of the test's messages"


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    with redis_server.client() as client:
        client.flushall()
    broker = RedisBroker(Settings(redis_url=redis_server.url, history_max_events=100, recent_max_flashes=100))
    yield broker
    await broker.close()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    async with Redis.from_url(redis_server.url) as client:
        yield client


def doc(headline: str) -> dict[str, object]:
    return new_document(FlashIn(headline=headline, language="en", category="politics"), Settings(redis_url=None))


class Listening:
    """A subscription to a channel, open before the test acts, so nothing it publishes is missed."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self.redis = redis
        self.pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self.channel = channel

    async def __aenter__(self) -> Listening:
        await self.pubsub.subscribe(self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()

    async def drain(self) -> list[bytes]:
        """Every message published so far: a marker is published last, and Redis keeps a channel's order."""
        await self.redis.publish(self.channel, END)
        got: list[bytes] = []
        async with asyncio.timeout(5):
            while True:
                message = await self.pubsub.get_message(timeout=1)
                if message is None:
                    continue
                if message["data"] == END:
                    return got
                got.append(message["data"])


async def test_a_burst_is_one_wake_up_one_job_and_one_fan_out(broker: RedisBroker, redis: Redis) -> None:
    async with Listening(redis, WAKE_CHANNEL) as wake, Listening(redis, LIVE_CHANNEL) as live:
        events = [await broker.record("flash", doc(f"burst {i}"), expect_version=None) for i in range(5)]
        assert await wake.drain() == [b"f"]  # no worker started fanning out in between: one wake-up
        assert await redis.zcard(FANOUT_PENDING) == 5
        queued = await redis.zrange(ARQ_QUEUE, 0, -1)
        assert len(queued) == 1 and queued[0] == await redis.get(FANOUT_QUEUED)  # one safety-net job

        batch = await broker.fan_out_pending()  # what a woken worker with push bridges does first
        assert batch.sent == 5 and [e.event_id for e in batch.events] == [e.event_id for e in events]
        assert [Event.from_message(m).event_id for m in await live.drain()] == [e.event_id for e in events]
        assert await redis.zcard(FANOUT_PENDING) == 5  # its push plans are not queued yet: still pending

        await broker.fanned_out(batch.events)
        assert await redis.zcard(FANOUT_PENDING) == 0
        assert await redis.zcard(ARQ_QUEUE) == 0 and not await redis.exists(ARQ_JOB_PREFIX + queued[0].decode())

        await broker.record("flash", doc("after the fan-out"), expect_version=None)
        assert await wake.drain() == [b"f"]  # the worker started fanning out: the next flash wakes it again
        assert await redis.zcard(ARQ_QUEUE) == 1  # and has a safety-net job of its own


async def test_a_fan_out_stopped_half_way_is_done_again_and_publishes_nothing_twice(
    broker: RedisBroker, redis: Redis
) -> None:
    async with Listening(redis, LIVE_CHANNEL) as live:
        events = [await broker.record("flash", doc(f"again {i}"), expect_version=None) for i in range(3)]
        await broker.fan_out_pending()  # published; then the worker died before the push plans were queued
        assert len(await live.drain()) == 3
        again = await broker.fan_out_pending(finish=True)  # the next wake-up, or the safety job
        assert again.sent == 0 and [e.event_id for e in again.events] == [e.event_id for e in events]
        assert await live.drain() == []
        assert await redis.zcard(FANOUT_PENDING) == 0 and await redis.zcard(ARQ_QUEUE) == 0


async def test_a_job_finds_its_own_event_when_nothing_is_pending(broker: RedisBroker) -> None:
    """A duplicate or late job still answers with its event (arq's result), and fans out nothing new."""
    event = await broker.record("flash", doc("own"), expect_version=None)
    await broker.fan_out_pending(finish=True)
    flash_id, version = flash_id_of(event.flash), event.flash["version"]
    batch = await broker.fan_out_pending((flash_id, version), finish=True)
    assert batch.sent == 0 and [(e.flash_id, e.event_id) for e in batch.events] == [(flash_id, event.event_id)]


async def test_a_started_safety_job_does_not_hold_back_the_next_one(broker: RedisBroker, redis: Redis) -> None:
    """A flash recorded while the queued job runs (arq's in-progress key) queues a job of its own: the running
    job may already have read the pending set."""
    await broker.record("flash", doc("first"), expect_version=None)
    job_id = (await redis.get(FANOUT_QUEUED)).decode()
    await redis.set(f"arq:in-progress:{job_id}", b"1", px=5000)  # as arq marks a job it starts
    await broker.record("flash", doc("second"), expect_version=None)
    assert await redis.zcard(ARQ_QUEUE) == 2


async def test_more_pending_than_a_batch_says_so_until_the_last(broker: RedisBroker, redis: Redis) -> None:
    for i in range(3):
        await broker.record("flash", doc(f"batch {i}"), expect_version=None)
    first = await broker.fan_out_pending(finish=True, limit=2)
    second = await broker.fan_out_pending(finish=True, limit=2)
    assert (len(first.events), first.more, first.sent) == (2, True, 2)
    assert (len(second.events), second.more, second.sent) == (1, False, 1)
    assert await redis.zcard(FANOUT_PENDING) == 0
