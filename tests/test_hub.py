"""The hub without sockets: matching, duplicate suppression, the replay/live seam and slow readers."""

from __future__ import annotations

import asyncio

from ticker_service.broker.memory import MemoryBroker
from ticker_service.filters import Filter
from ticker_service.hub import Hub, Subscriber
from ticker_service.models import Event, FlashIn, new_document
from ticker_service.settings import Settings

SETTINGS = Settings(redis_url=None)


def event(n: int, language: str = "en") -> Event:
    doc = new_document(FlashIn(headline=f"n{n}", language=language, category="politics"), SETTINGS)
    return Event(f"1000-{n}", "flash", doc)


def hub(max_queue: int = 100) -> Hub:
    return Hub(MemoryBroker(SETTINGS, run_fanout=False), max_queue=max_queue, replay_limit=1000)


async def drain(sub: Subscriber) -> list[str]:
    batch = await asyncio.wait_for(sub.next_batch(), 1)
    assert batch is not None
    return [frames.event.event_id for frames in batch]


async def test_dispatch_reaches_matching_readers_once_per_event_id() -> None:
    h = hub()
    en = await h.attach(Filter.parse({"lang": "en"}), None)
    ar = await h.attach(Filter.parse({"lang": "ar"}), None)
    h.dispatch(event(1))
    h.dispatch(event(1))  # a re-run fan-out job
    h.dispatch(event(2, "ar"))
    assert await drain(en) == ["1000-1"]
    assert await drain(ar) == ["1000-2"]


async def test_frames_are_encoded_once_and_shared() -> None:
    h = hub()
    a = await h.attach(Filter(), None)
    b = await h.attach(Filter(), None)
    h.dispatch(event(1))
    batch_a, batch_b = await a.next_batch(), await b.next_batch()
    assert batch_a is not None and batch_b is not None
    assert batch_a[0] is batch_b[0]
    assert batch_a[0].ws is batch_b[0].ws
    assert batch_a[0].sse.startswith(b"id: 1000-1\nevent: flash\ndata: {")


async def test_replay_then_held_live_events_without_duplicates() -> None:
    """Live events that arrive during the replay wait, and those the replay already had are dropped."""
    sub = Subscriber(Filter(), 100)
    sub.hold()
    sub.offer(hub_frames(3))  # arrived live while the history was read, and is also in the history
    sub.offer(hub_frames(5))  # arrived live after the history read
    sub.release("1000-1", [event(2), event(3), event(4)])
    assert await drain(sub) == ["1000-2", "1000-3", "1000-4", "1000-5"]
    sub.offer(hub_frames(4))  # a late duplicate of a replayed event
    sub.offer(hub_frames(6))
    assert await drain(sub) == ["1000-6"]


async def test_slow_reader_is_closed_not_awaited() -> None:
    h = hub(max_queue=3)
    slow = await h.attach(Filter(), None)
    fast = await h.attach(Filter(), None)
    for n in range(3):
        h.dispatch(event(n))
    assert await drain(fast) == ["1000-0", "1000-1", "1000-2"]
    h.dispatch(event(3))
    assert slow.closed and slow.close_reason == "slow"
    assert await slow.next_batch() is None
    assert await drain(fast) == ["1000-3"]


def hub_frames(n: int):  # type: ignore[no-untyped-def]
    from ticker_service.hub import Frames

    return Frames(event(n))
