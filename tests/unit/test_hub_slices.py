"""A fan-out written in slices: the loop runs between them, a flash arriving meanwhile overtakes the rest of the
previous one for the readers already written, and every reader still gets every event once, in order."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from ticker_service.broker.memory import MemoryBroker
from ticker_service.events import Event
from ticker_service.filters import Filter
from ticker_service.flashes import FlashIn, new_document
from ticker_service.hub import CLOCK_EVERY, Hub
from ticker_service.readers import TransportReader
from ticker_service.settings import Settings
from ticker_service.wire import ws_frame

SETTINGS = Settings(redis_url=None)
READERS = 5 * CLOCK_EVERY + 3  # several slices, the last one short


_EVENTS: dict[tuple[int, str], Event] = {}


def event(n: int, language: str = "en") -> Event:
    """The same event (same document, same bytes) each time it is asked for."""
    if (n, language) not in _EVENTS:
        doc = new_document(FlashIn(headline=f"n{n}", language=language, category="politics"), SETTINGS)
        _EVENTS[n, language] = Event(f"e1-1000-{n}", "flash", doc)
    return _EVENTS[n, language]


def sliced_hub(slice_seconds: float = 1e-9) -> Hub:
    """A hub whose every slice is over its time at the first look at the clock: one slice per CLOCK_EVERY readers."""
    return Hub(
        MemoryBroker(SETTINGS, run_fanout=False),
        max_queue=10,
        replay_limit=1000,
        write_buffer_limit=1 << 20,
        slice_seconds=slice_seconds,
    )


class Socket:
    """Records a reader's writes, and every reader's writes in the order they happened (``log``)."""

    def __init__(self, log: list[tuple[Socket, bytes]]) -> None:
        self.log = log
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.log.append((self, data))

    def get_write_buffer_size(self) -> int:
        return 0


def readers(h: Hub, count: int, flt: Filter | None = None) -> tuple[list[tuple[TransportReader, Socket]], list]:
    log: list[tuple[Socket, bytes]] = []
    out = []
    for _ in range(count):
        sock = Socket(log)
        reader = TransportReader(flt or Filter(), h.write_buffer_limit, sock, websocket=True, closer=lambda _: None)
        h.add(reader)
        out.append((reader, sock))
    return out, log


def frame(e: Event) -> bytes:
    return ws_frame(e.to_message())


async def until_written(h: Hub) -> None:
    deadline = asyncio.get_running_loop().time() + 5
    while h._runs or h._pending:
        assert asyncio.get_running_loop().time() < deadline, "the fan-out never finished"
        await asyncio.sleep(0)


async def test_the_loop_runs_between_the_slices_of_one_fanout() -> None:
    h = sliced_hub()
    socks = [sock for _, sock in readers(h, READERS)[0]]
    seen_by_other_work: list[int] = []
    h.dispatch(event(1))
    asyncio.get_running_loop().call_soon(lambda: seen_by_other_work.append(sum(map(bool, (s.writes for s in socks)))))
    await until_written(h)
    assert seen_by_other_work and 0 < seen_by_other_work[0] < READERS  # it ran in the middle of the fan-out
    assert all(s.writes == [frame(event(1))] for s in socks)


async def test_without_a_slice_time_one_fanout_is_written_in_one_go() -> None:
    h = sliced_hub(0)
    socks = [sock for _, sock in readers(h, READERS)[0]]
    seen: list[int] = []
    h.dispatch(event(1))
    asyncio.get_running_loop().call_soon(lambda: seen.append(sum(map(bool, (s.writes for s in socks)))))
    await until_written(h)
    assert seen == [READERS]


async def test_a_flash_arriving_mid_fanout_reaches_written_readers_first_then_those_owed() -> None:
    """A few readers the first flash reached get the second at once; then those it had not reached get both in one
    write (before the other reached ones: the readers behind are not left behind again); then the rest."""
    h = sliced_hub()
    pairs, log = readers(h, READERS)
    h.dispatch(event(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # two slices
    reached = [sock for sock, _ in log]
    assert len(reached) == 2 * CLOCK_EVERY
    h.dispatch(event(2))
    await until_written(h)
    after = [sock for sock, _ in log[len(reached) :]]
    owed = READERS - len(reached)
    assert set(after[:CLOCK_EVERY]) <= set(reached)  # the second flash on some screens at once
    assert set(after[CLOCK_EVERY : CLOCK_EVERY + owed]).isdisjoint(reached)  # then the readers behind
    assert set(after[CLOCK_EVERY + owed :]) <= set(reached)
    for _, sock in pairs:
        assert b"".join(sock.writes) == frame(event(1)) + frame(event(2))  # each once, in order
        assert len(sock.writes) == (2 if sock in reached else 1)


async def test_a_reader_removed_mid_fanout_gets_nothing_more() -> None:
    h = sliced_hub()
    pairs, log = readers(h, READERS)
    h.dispatch(event(1))
    await asyncio.sleep(0)
    owed = [(reader, sock) for reader, sock in pairs if not sock.writes]
    gone, gone_sock = owed[-1]
    h.remove(gone)
    await until_written(h)
    assert gone_sock.writes == []
    assert len(log) == READERS - 1


async def test_a_reader_refiltered_mid_fanout_gets_what_it_was_owed_then_what_it_now_matches() -> None:
    h = sliced_hub()
    pairs, _ = readers(h, READERS, Filter.parse({"lang": "en"}))
    h.dispatch(event(1))
    await asyncio.sleep(0)
    reader, sock = next((r, s) for r, s in pairs if not s.writes)
    h.refilter(reader, Filter.parse({"lang": "ar"}))
    h.dispatch(event(2, "ar"))
    h.dispatch(event(3, "en"))
    await until_written(h)
    assert b"".join(sock.writes) == frame(event(1)) + frame(event(2, "ar"))


@settings(max_examples=40, deadline=None)
@given(
    languages=st.lists(st.sampled_from(["en", "ar"]), min_size=1, max_size=12),
    steps=st.lists(st.integers(min_value=0, max_value=3), min_size=12, max_size=12),
    counts=st.tuples(st.integers(0, 3 * CLOCK_EVERY), st.integers(0, 3 * CLOCK_EVERY), st.integers(1, CLOCK_EVERY)),
)
def test_every_reader_gets_every_matching_event_once_in_order(
    languages: list[str], steps: list[int], counts: tuple[int, int, int]
) -> None:
    """Flashes dispatched between any number of slices: each reader's bytes are its matching events, in order."""

    async def run() -> None:
        h = sliced_hub()
        groups = {
            "en": readers(h, counts[0], Filter.parse({"lang": "en"}))[0],
            "ar": readers(h, counts[1], Filter.parse({"lang": "ar"}))[0],
            "all": readers(h, counts[2])[0],
        }
        events = [event(n, lang) for n, lang in enumerate(languages, 1)]
        for e, step in zip(events, steps, strict=False):
            h.dispatch(e)
            for _ in range(step):
                await asyncio.sleep(0)
        await until_written(h)
        for name, pairs in groups.items():
            wanted = b"".join(frame(e) for e in events if name in ("all", e.flash["language"]))
            for _, sock in pairs:
                assert b"".join(sock.writes) == wanted

    asyncio.run(run())
