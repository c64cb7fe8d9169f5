"""One contract suite, run against both Broker implementations (in-process memory, and a private Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from ticker_service.broker import Broker, ClaimLost, HistoryGap, VersionConflict, create_broker
from ticker_service.events import Event, event_key
from ticker_service.flashes import FlashIn, flash_id_of, new_document, withdrawn_document
from ticker_service.settings import Settings

from .support.processes import RedisServer


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest, redis_server: RedisServer) -> AsyncIterator[Broker]:
    if request.param == "redis":
        with redis_server.client() as client:
            client.flushall()
        settings = Settings(redis_url=redis_server.url, history_max_events=100, recent_max_flashes=100)
    else:
        settings = Settings(redis_url=None, history_max_events=100, recent_max_flashes=100)
    broker = create_broker(settings, run_fanout=False)
    await broker.start()
    yield broker
    await broker.close()


def doc(headline: str = "contract") -> dict[str, object]:
    return new_document(FlashIn(headline=headline, language="en", category="politics"), Settings(redis_url=None))


async def test_event_ids_increase_and_history_replays_after_an_id(broker: Broker) -> None:
    """record() hands out increasing ids; events_after() returns exactly the later ones, oldest first."""
    _, start = await broker.recent(1)  # the position before anything was recorded
    events = [await broker.record("flash", doc(f"n{i}"), expect_version=None) for i in range(5)]
    keys = [event_key(e.event_id) for e in events]
    assert keys == sorted(keys) and len(set(keys)) == 5
    after = await broker.events_after(events[1].event_id, 100)
    assert [e.event_id for e in after] == [e.event_id for e in events[2:]]
    assert [e.flash for e in after] == [e.flash for e in events[2:]]
    assert await broker.events_after(events[-1].event_id, 100) == []
    assert [e.event_id for e in await broker.events_after(start, 2)] == [e.event_id for e in events[:2]]


async def test_version_guard_rejects_stale_and_duplicate_writes(broker: Broker) -> None:
    first = doc()
    await broker.record("flash", first, expect_version=None)
    with pytest.raises(VersionConflict):
        await broker.record("flash", first, expect_version=None)  # same uri again
    withdrawn = withdrawn_document(first)
    await broker.record("withdraw", withdrawn, expect_version="1")
    with pytest.raises(VersionConflict):
        await broker.record("withdraw", withdrawn_document(first), expect_version="1")  # lost the race
    assert await broker.get_flash(flash_id_of(first)) == withdrawn


async def test_recent_is_newest_first_without_withdrawn_and_names_the_last_event(broker: Broker) -> None:
    a, b, c = doc("a"), doc("b"), doc("c")
    for d in (a, b, c):
        await broker.record("flash", d, expect_version=None)
    last = await broker.record("withdraw", withdrawn_document(b), expect_version="1")
    docs, last_event_id = await broker.recent(10)
    assert [d["uri"] for d in docs] == [c["uri"], a["uri"]]
    assert last_event_id == last.event_id


async def test_event_for_finds_the_event_of_each_version(broker: Broker) -> None:
    first = doc()
    e1 = await broker.record("flash", first, expect_version=None)
    e2 = await broker.record("withdraw", withdrawn_document(first), expect_version="1")
    fid = flash_id_of(first)
    assert await broker.event_for(fid, "1") == e1
    assert await broker.event_for(fid, "2") == e2
    assert await broker.event_for(fid, "3") is None


async def test_idempotency_claims(broker: Broker) -> None:
    """new → in flight → done (with the first document); another body is a mismatch; release frees a claim."""
    claim = await broker.claim("scope-1", "fp")
    assert claim.state == "new" and claim.token
    assert (await broker.claim("scope-1", "fp")).state == "in_flight"
    assert (await broker.claim("scope-1", "other")).state == "mismatch"
    first = doc()
    with pytest.raises(ClaimLost):  # another request's token: not ours to record under
        await broker.record("flash", first, expect_version=None, idempotency=("scope-1", "fp", "not-the-token"))
    await broker.record("flash", first, expect_version=None, idempotency=("scope-1", "fp", claim.token))
    done = await broker.claim("scope-1", "fp")
    assert (done.state, done.document) == ("done", first)
    assert (await broker.claim("scope-1", "other")).state == "mismatch"
    second = await broker.claim("scope-2", "fp")
    assert second.state == "new"
    await broker.release("scope-2", "someone-else")  # not this claim: kept
    assert (await broker.claim("scope-2", "fp")).state == "in_flight"
    await broker.release("scope-2", second.token)
    assert (await broker.claim("scope-2", "fp")).state == "new"


async def test_history_is_bounded(broker: Broker) -> None:
    """The history keeps about history_max_events (Redis trims approximately, never below the bound)."""
    _, start = await broker.recent(1)
    events = [await broker.record("flash", doc(f"bulk {i}"), expect_version=None) for i in range(250)]
    with pytest.raises(HistoryGap):
        await broker.events_after(start, 1000)  # the reader's next event was trimmed away
    kept = await broker.events_after(events[-100].event_id, 1000)
    assert [e.event_id for e in kept] == [e.event_id for e in events[-99:]]
    docs, _ = await broker.recent(1000)
    assert len(docs) == 100


@contextlib.asynccontextmanager
async def live(broker: Broker) -> AsyncIterator[asyncio.Queue[Event]]:
    """What a hub in another process receives: for Redis, a second broker subscribed over pub/sub."""
    from ticker_service.broker.memory import MemoryBroker
    from ticker_service.broker.redis import RedisBroker

    received: asyncio.Queue[Event] = asyncio.Queue()
    listener = broker if isinstance(broker, MemoryBroker) else create_broker(broker.settings)  # type: ignore[attr-defined]
    listener.subscribe(received.put_nowait)
    await listener.start()
    try:
        if isinstance(listener, RedisBroker):
            await asyncio.wait_for(listener._subscribed.wait(), 5)
        yield received
    finally:
        if listener is not broker:
            await listener.close()


async def test_publish_reaches_every_subscribed_process(broker: Broker) -> None:
    """publish() reaches a handler subscribed through another broker instance (for Redis: over pub/sub)."""
    async with live(broker) as received:
        event = await broker.record("flash", doc(), expect_version=None)
        await broker.publish(event)
        assert await asyncio.wait_for(received.get(), 5) == event


async def test_publish_is_in_history_order_and_once_whatever_the_job_order(broker: Broker) -> None:
    """Fan-out jobs that run late, early or twice still put each event on the live channel once, in order."""
    async with live(broker) as received:
        events = [await broker.record("flash", doc(f"o{i}"), expect_version=None) for i in range(4)]
        assert await broker.publish(events[2]) == 3  # the job of the third event ran first
        assert await broker.publish(events[0]) == 0  # the jobs of earlier events find them sent
        assert await broker.publish(events[2]) == 0  # a re-run job sends nothing
        assert await broker.publish(events[3]) == 1
        got = [await asyncio.wait_for(received.get(), 5) for _ in range(4)]
        assert got == events
        assert received.empty()


async def test_a_lost_history_has_a_new_epoch(broker: Broker, redis_server: RedisServer) -> None:
    """Ids from before the history was lost (Redis emptied; a new embedded process) are a gap, not a resume point."""
    from ticker_service.broker.memory import MemoryBroker
    from ticker_service.events import split_event_id

    old = await broker.record("flash", doc("before"), expect_version=None)
    if isinstance(broker, MemoryBroker):
        broker = create_broker(broker.settings, run_fanout=False)
    else:
        with redis_server.client() as client:
            client.flushall()  # what a restart without persistence leaves
    new = await broker.record("flash", doc("after"), expect_version=None)
    assert split_event_id(new.event_id)[0] != split_event_id(old.event_id)[0]
    with pytest.raises(HistoryGap):
        await broker.events_after(old.event_id, 10)
    assert await broker.events_after(new.event_id, 10) == []


async def test_stage_keeps_a_withheld_flash_out_of_history_and_list_until_recorded(broker: Broker) -> None:
    """stage(): the flash's state with its reason, and no event; record() of the next version releases it, as the
    newest flash of the list; discard() forgets one that never went out."""
    from ticker_service.broker import Withheld
    from ticker_service.flashes import released_document

    before = await broker.record("flash", doc("already out"), expect_version=None)
    waiting, dropped = doc("scheduled"), doc("pending")
    soon = Withheld("scheduled", 4_102_444_800_000, "desk", "id1")  # 2100: no timer fires during the test
    await broker.stage(waiting, expect_version=None, withheld=soon)
    await broker.stage(dropped, expect_version=None, withheld=Withheld("pending", 0, "junior", "id2"))
    with pytest.raises(VersionConflict):
        await broker.stage(waiting, expect_version=None, withheld=soon)
    assert await broker.get_flash(flash_id_of(waiting)) == waiting
    assert await broker.withheld(flash_id_of(waiting)) == soon
    assert await broker.events_after(before.event_id, 10) == []
    assert [d["uri"] for d in (await broker.recent(10))[0]] == [before.flash["uri"]]
    assert [(d["uri"], w.by) for d, w in await broker.list_withheld("pending", 10)] == [(dropped["uri"], "junior")]
    assert [d["uri"] for d, _ in await broker.list_withheld("scheduled", 10)] == [waiting["uri"]]

    await broker.discard(flash_id_of(dropped), "1")
    assert await broker.get_flash(flash_id_of(dropped)) is None
    assert await broker.list_withheld("pending", 10) == []
    out = await broker.record("flash", released_document(waiting), expect_version="1")
    assert await broker.withheld(flash_id_of(waiting)) is None
    assert await broker.list_withheld("scheduled", 10) == []
    assert [e.event_id for e in await broker.events_after(before.event_id, 10)] == [out.event_id]
    assert [d["uri"] for d in (await broker.recent(10))[0]] == [waiting["uri"], before.flash["uri"]]


async def test_a_held_flash_leaves_the_list_and_comes_back_in_its_place(broker: Broker) -> None:
    from ticker_service.flashes import held_document, released_document

    a, b = doc("a"), doc("b")
    for d in (a, b):
        await broker.record("flash", d, expect_version=None)
    held = held_document(a)
    await broker.record("hold", held, expect_version="1")
    assert [d["uri"] for d in (await broker.recent(10))[0]] == [b["uri"]]
    assert await broker.withheld(flash_id_of(a)) is None  # held is not waiting: it was published
    await broker.stage({**held, "version": "3"}, expect_version="2", withheld=None)  # a silent correction
    assert [d["uri"] for d in (await broker.recent(10))[0]] == [b["uri"]]
    await broker.record("update", released_document({**held, "version": "3"}), expect_version="3")
    assert [d["uri"] for d in (await broker.recent(10))[0]] == [b["uri"], a["uri"]]
