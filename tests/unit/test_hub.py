"""The hub without sockets: filter index, duplicate suppression, batching, the replay/live seam, slow readers."""

from __future__ import annotations

import asyncio
import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_service.broker.memory import MemoryBroker
from ticker_service.events import Event
from ticker_service.filters import Filter
from ticker_service.flashes import FlashIn, new_document, withdrawn_document
from ticker_service.hub import Hub
from ticker_service.readers import QueueReader, TransportReader
from ticker_service.settings import Settings
from ticker_service.wire import Batch, Frames, ws_frame

SETTINGS = Settings(redis_url=None)


def event(n: int, language: str = "en") -> Event:
    doc = new_document(FlashIn(headline=f"n{n}", language=language, category="politics"), SETTINGS)
    return Event(f"e1-1000-{n}", "flash", doc)


def doc(headline: str) -> dict[str, object]:
    return new_document(FlashIn(headline=headline, language="en", category="politics"), SETTINGS)


def hub() -> Hub:
    return Hub(MemoryBroker(SETTINGS, run_fanout=False), max_queue=3, replay_limit=1000, write_buffer_limit=100)


class FakeSocket:
    """Records writes like an asyncio transport; ``buffered`` plays a reader that stopped reading."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.closed: list[str] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered


def socket_reader(h: Hub, flt: Filter, *, websocket: bool = True) -> tuple[TransportReader, FakeSocket]:
    sock = FakeSocket()
    reader = TransportReader(flt, h.write_buffer_limit, sock, websocket=websocket, closer=sock.closed.append)
    h.add(reader)
    return reader, sock


async def tick() -> None:
    await asyncio.sleep(0)  # the hub flushes what arrived in one loop iteration on the next


async def drain(sub: QueueReader) -> list[str]:
    batch = await asyncio.wait_for(sub.next_batch(), 1)
    assert batch is not None
    return [frames.event.event_id for frames in batch]


async def test_dispatch_reaches_matching_readers_once_per_event_id() -> None:
    h = hub()
    en = QueueReader(Filter.parse({"lang": "en"}), 10)
    ar = QueueReader(Filter.parse({"lang": "ar"}), 10)
    await h.attach(en, None)
    await h.attach(ar, None)
    h.dispatch(event(1))
    h.dispatch(event(1))  # a re-run fan-out job
    h.dispatch(event(2, "ar"))
    await tick()
    assert await drain(en) == ["e1-1000-1"]
    assert await drain(ar) == ["e1-1000-2"]


async def test_readers_are_grouped_by_filter() -> None:
    h = hub()
    for _ in range(3):
        socket_reader(h, Filter.parse({"lang": "en"}))
    socket_reader(h, Filter.parse({"lang": "ar"}))
    assert h.count == 4
    assert sorted(len(g) for g in h.groups.values()) == [1, 3]


async def test_one_write_per_reader_per_iteration_with_shared_bytes() -> None:
    """Events of one loop iteration go out as one write, the same bytes object for every reader of a filter."""
    h = hub()
    (_, sock_a), (_, sock_b) = socket_reader(h, Filter()), socket_reader(h, Filter())
    _, sse = socket_reader(h, Filter(), websocket=False)
    for n in (1, 2, 3):
        h.dispatch(event(n))
    await tick()
    assert len(sock_a.writes) == len(sock_b.writes) == len(sse.writes) == 1
    assert sock_a.writes[0] is sock_b.writes[0]
    expected = b"".join(ws_frame(event(n).to_message()) for n in (1, 2, 3))
    assert len(sock_a.writes[0]) == len(expected)
    assert sse.writes[0].split(b"\r\n", 1)[0] == b"%x" % (len(sse.writes[0].split(b"\r\n", 1)[1]) - 2)
    assert sse.writes[0].count(b"\nevent: flash\n") == 3


async def test_events_soon_after_a_flush_are_coalesced_into_the_next_write() -> None:
    """A burst goes out in fewer writes: the first event at once, those close behind it together a moment later."""
    h = Hub(MemoryBroker(SETTINGS, run_fanout=False), max_queue=3, replay_limit=1000, write_buffer_limit=100,
            coalesce=0.5)  # fmt: skip
    _, sock = socket_reader(h, Filter())
    loop = asyncio.get_running_loop()
    h.dispatch(event(1))
    await tick()
    assert len(sock.writes) == 1  # nothing before it: no wait
    first = loop.time()
    burst = [event(n) for n in (2, 3, 4)]
    for e in burst:
        h.dispatch(e)
        await tick()  # separate loop iterations, which without coalescing would be three writes
    deadline = loop.time() + 5
    while len(sock.writes) < 2 and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert loop.time() - first >= 0.5 * 0.9
    assert len(sock.writes) == 2
    assert sock.writes[1] == b"".join(ws_frame(e.to_message()) for e in burst)


async def test_replay_then_held_live_events_without_duplicates() -> None:
    """Live events that arrive during the replay wait, and those the replay already had are dropped."""
    sub = QueueReader(Filter(), 100)
    sub.hold()
    sub.offer(Batch([Frames(event(3))]))  # arrived live while the history was read, and is also in the history
    sub.offer(Batch([Frames(event(5))]))  # arrived live after the history read
    sub.release("e1-1000-1", [event(2), event(3), event(4)])
    assert await drain(sub) == ["e1-1000-2", "e1-1000-3", "e1-1000-4", "e1-1000-5"]
    sub.offer(Batch([Frames(event(4)), Frames(event(6))]))  # a late duplicate of a replayed event, and a new one
    sub.offer(Batch([Frames(event(7))]))
    assert await drain(sub) == ["e1-1000-6", "e1-1000-7"]


async def test_slow_reader_is_closed_not_awaited() -> None:
    h = hub()
    slow = QueueReader(Filter(), 3)
    fast = QueueReader(Filter(), 10)
    await h.attach(slow, None)
    await h.attach(fast, None)
    for n in range(3):
        h.dispatch(event(n))
    await tick()
    assert await drain(fast) == ["e1-1000-0", "e1-1000-1", "e1-1000-2"]
    h.dispatch(event(3))
    await tick()
    assert slow.closed and slow.close_reason == "slow"
    assert await slow.next_batch() is None
    assert await drain(fast) == ["e1-1000-3"]


async def test_socket_reader_over_its_write_buffer_limit_is_cut_off() -> None:
    h = hub()
    stalled, stalled_sock = socket_reader(h, Filter())
    _, ok_sock = socket_reader(h, Filter())
    stalled_sock.buffered = 101
    h.dispatch(event(1))
    await tick()
    assert stalled.closed and stalled_sock.closed == ["slow"]
    assert stalled_sock.writes == []
    assert len(ok_sock.writes) == 1


LANGS = ["en", "en-GB", "ar", "es", "es-MX", "fr"]
CATEGORIES = ["politics", "economy", "sports", "health"]
REGIONS = ["europe", "mena", "asia", "africa"]

filters = st.builds(
    Filter,
    languages=st.lists(st.sampled_from(["en", "ar", "es", "es-mx", "fr", "en-gb"]), max_size=2, unique=True).map(tuple),
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True).map(tuple),
    regions=st.lists(st.sampled_from(REGIONS), max_size=2, unique=True).map(tuple),
    max_urgency=st.integers(1, 9),
)
flashes = st.builds(
    lambda lang, cat, regions, urgency: new_document(
        FlashIn(headline="p", language=lang, category=cat, regions=regions, urgency=urgency), SETTINGS
    ),
    st.sampled_from(LANGS),
    st.sampled_from(CATEGORIES),
    st.lists(st.sampled_from(REGIONS), max_size=3, unique=True),
    st.integers(1, 9),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(filters, min_size=1, max_size=30), st.lists(flashes, min_size=1, max_size=5))
def test_filter_index_delivers_to_exactly_the_brute_force_set(subs: list[Filter], docs: list[dict]) -> None:
    """Whatever the subscriptions, each reader gets exactly the events its own filter matches, in order."""

    async def run() -> None:
        h = hub()
        readers = [socket_reader(h, flt) for flt in subs]
        events = [Event(f"e1-2000-{i}", "flash", doc) for i, doc in enumerate(docs)]
        for e in events:
            h.dispatch(e)
        await tick()
        for flt, (_, sock) in zip(subs, readers, strict=True):
            expected = b"".join(ws_frame(e.to_message()) for e in events if flt.matches(e.flash))
            assert b"".join(sock.writes) == expected

    asyncio.run(run())


async def test_real_socket_that_stops_reading_is_cut_off() -> None:
    """A reader whose kernel buffers are full: the transport's buffer passes the limit and the reader is closed."""
    loop = asyncio.get_running_loop()
    server_sock, client_sock = socket.socketpair()
    for sock in (server_sock, client_sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, server_sock)
    try:
        h = Hub(MemoryBroker(SETTINGS, run_fanout=False), max_queue=10, replay_limit=10, write_buffer_limit=16_384)
        closed: list[str] = []
        reader = TransportReader(Filter(), h.write_buffer_limit, transport, websocket=True, closer=closed.append)
        h.add(reader)
        for n in range(500):  # bounded: ~300 KB, far past kernel buffers of a few KB plus the 16 KB limit
            h.dispatch(event(n))
            await tick()
            if closed:
                break
        assert closed == ["slow"]
        assert 16_384 < transport.get_write_buffer_size() < 16_384 + 2_000
    finally:
        transport.abort()
        client_sock.close()


async def test_a_resume_never_replays_a_killed_flash() -> None:
    """From before a flash that was withdrawn since, the replay has the withdrawal and none of the flash's earlier
    events (from the broker and from the hub's window alike); other flashes and the resume point are kept."""
    broker = MemoryBroker(SETTINGS, run_fanout=False)
    h = Hub(broker, max_queue=10, replay_limit=1000, write_buffer_limit=100)
    before = await broker.record("flash", doc("kept"), expect_version=None)
    killed = doc("killed")
    events = [await broker.record("flash", killed, expect_version=None)]
    events.append(await broker.record("update", {**killed, "version": "2"}, expect_version="1"))
    other = await broker.record("flash", doc("other"), expect_version=None)
    events.append(await broker.record("withdraw", withdrawn_document({**killed, "version": "2"}), expect_version="2"))
    expected = [other.event_id, events[-1].event_id]
    for from_window in (False, True):
        if from_window:
            for e in (before, *events[:2], other, events[-1]):
                h.dispatch(e)
            await tick()
        reader = QueueReader(Filter(), 10)
        await h.attach(reader, before.event_id)
        batch = await asyncio.wait_for(reader.next_batch(), 1)
        assert batch is not None
        assert [f.event.event_id for f in batch] == expected, from_window


async def test_a_replay_over_the_limit_is_a_reset_without_withdrawn_flashes() -> None:
    """More history after the reader's id than the replay limit: a cut replay could end before a withdrawal, so
    the reader gets a reset with the current flashes instead, the withdrawn one not among them."""
    broker = MemoryBroker(SETTINGS, run_fanout=False)
    h = Hub(broker, max_queue=10, replay_limit=2, write_buffer_limit=100)
    start = await broker.record("flash", doc("a"), expect_version=None)
    killed = doc("killed")
    await broker.record("flash", killed, expect_version=None)
    kept = doc("kept")
    await broker.record("flash", kept, expect_version=None)
    last = await broker.record("withdraw", withdrawn_document(killed), expect_version="1")
    reader = QueueReader(Filter(), 10)
    await h.attach(reader, start.event_id)
    batch = await asyncio.wait_for(reader.next_batch(), 1)
    assert batch is not None and [f.event.type for f in batch] == ["reset"]
    reset = batch[0].event
    assert reset.event_id == last.event_id
    assert [d["headlines"][0]["value"] for d in reset.flash["flashes"]] == ["kept", "a"]
    # Within the limit it is a replay as before.
    reader = QueueReader(Filter(), 10)
    await h.attach(reader, (await broker.events_after(start.event_id, 10))[1].event_id)
    batch = await asyncio.wait_for(reader.next_batch(), 1)
    assert batch is not None and [f.event.event_id for f in batch] == [last.event_id]


async def test_a_socket_reader_is_written_directly_only_past_its_replay() -> None:
    """The fan-out's direct write (no ``offer``) starts once a resumed reader is past its replay's seam and stops
    when it leaves the index: the replay, a flush of events the replay already had, and live events after it each
    arrive once, in order."""
    h = Hub(MemoryBroker(SETTINGS, run_fanout=False), max_queue=10, replay_limit=1000, write_buffer_limit=1 << 20)
    events = [event(n) for n in range(7)]
    for e in events[:4]:
        h.dispatch(e)  # in the window at once, flushed on the next iteration
    sock = FakeSocket()
    reader = TransportReader(Filter(), h.write_buffer_limit, sock, websocket=True, closer=sock.closed.append)
    h.connect(reader, "e1-1000-0")  # replays 1-3 from the window
    assert reader.attached and not reader.direct
    await tick()  # the flush of 0-3: nothing new for this reader
    assert not reader.direct
    h.dispatch(events[4])
    await tick()
    assert reader.direct
    h.dispatch(events[5])
    await tick()
    expected = b"".join(ws_frame(e.to_message()) for e in events[1:6])
    assert b"".join(sock.writes) == expected
    h.remove(reader)
    assert not reader.direct
    h.add(reader)
    assert reader.direct
    reader.close("gone")
    assert not reader.direct
    h.dispatch(events[6])
    await tick()
    assert b"".join(sock.writes) == expected
