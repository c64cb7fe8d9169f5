"""One story, many languages, without sockets: the choice of a version, the hub's table, replay and fan-out."""

from __future__ import annotations

import asyncio
import itertools

import orjson

from ticker_service.broker.memory import MemoryBroker
from ticker_service.events import Event
from ticker_service.filters import Filter
from ticker_service.flashes import FlashIn, new_document, withdrawn_document
from ticker_service.hub import Hub
from ticker_service.readers import QueueReader
from ticker_service.settings import Settings
from ticker_service.stories import MAX_VERSIONS, Change, StoryTable, best, decide, select, story_of

SETTINGS = Settings(redis_url=None)
_seq = itertools.count(1)
AR_EN = Filter.parse({"lang": "ar,en"})


def doc(language: str, story: str | None = "s1") -> dict:
    flash = FlashIn(headline=f"h {language}", language=language, category="politics", story=story)
    return new_document(flash, SETTINGS)


def ev(type_: str, d: dict) -> Event:
    return Event(f"e1-1000-{next(_seq)}", type_, d)  # type: ignore[arg-type]


def test_the_story_is_ninjs_events_and_the_best_version_follows_the_order() -> None:
    """``story`` becomes ``events: [{"id"}]``; the first range wins, ``en`` also takes ``en-GB``; others are out."""
    en, ar, fr = doc("en-GB"), doc("ar"), doc("fr")
    assert en["events"] == [{"id": "s1"}] and story_of(en) == "s1" and story_of(doc("en", None)) is None
    assert best(AR_EN, [en, ar, fr]) is ar
    assert best(AR_EN, [en, fr]) is en
    assert best(AR_EN, [fr]) is None
    assert best(AR_EN, [withdrawn_document(ar), en]) is en


def test_select_keeps_one_version_per_story_only_for_a_preference() -> None:
    """Lists: one version of each story with ``lang=ar,en``; a plain ``lang=en`` and story-less flashes as before."""
    en, ar, other = doc("en"), doc("ar"), doc("en", None)
    assert select(AR_EN, [en, other, ar]) == [other, ar]
    assert select(Filter.parse({"lang": "en"}), [en, other, ar]) == [en, other]
    assert select(Filter(), [en, other, ar]) == [en, other, ar]


def test_decide_sends_a_better_version_as_an_update_that_replaces() -> None:
    """Better later: ``update`` with ``replaces``; worse later: nothing; withdrawn: the next best, then ``withdraw``."""
    table, order = StoryTable(), Filter.parse({"lang": "ar,en,fr"})
    en, ar = doc("en"), doc("ar")
    first = ev("flash", en)
    assert decide(order, first, _change(table, first)) is first
    better = ev("flash", ar)
    shown = decide(order, better, _change(table, better))
    assert shown is not None and shown.type == "update" and shown.flash is ar and shown.replaces == en["uri"]
    assert orjson.loads(shown.to_message())["replaces"] == en["uri"]
    assert b'data: {"flash":' in shown.to_sse()
    worse = ev("flash", doc("fr"))
    assert decide(order, worse, _change(table, worse)) is None
    gone = ev("withdraw", withdrawn_document(ar))
    fallback = decide(order, gone, _change(table, gone))
    assert fallback is not None and fallback.flash is en and fallback.replaces == ar["uri"]
    last = ev("withdraw", withdrawn_document(en))
    fallback = decide(order, last, _change(table, last))
    assert fallback is not None and fallback.flash is worse.flash and fallback.replaces == en["uri"]
    end = ev("withdraw", withdrawn_document(worse.flash))
    assert decide(order, end, _change(table, end)) is end


def _change(table: StoryTable, event: Event) -> Change:
    change = table.apply(event)
    assert change is not None
    return change


def test_replay_starts_from_the_versions_live_at_the_resume_point() -> None:
    """A resuming reader that had ``en`` gets ``ar`` as a replacing update, as it would have live."""
    table = StoryTable()
    en, ar = ev("flash", doc("en")), ev("flash", doc("ar"))
    table.apply(en)
    table.apply(ar)
    replay = list(table.replay(en.event_id, [ar]))
    shown = decide(AR_EN, ar, replay[0][1])  # type: ignore[arg-type]
    assert shown is not None and shown.replaces == en.flash["uri"]
    from_start = [decide(AR_EN, e, c) for e, c in table.replay("e1-1000-0", [en, ar])]  # type: ignore[arg-type]
    assert [s.type if s else None for s in from_start] == ["flash", "update"]


async def test_hub_encodes_a_replacement_once_and_leaves_other_readers_alone() -> None:
    """Readers with a preference share one encoding; ``lang=en`` and unfiltered readers get what they got before."""
    h = Hub(MemoryBroker(SETTINGS, run_fanout=False), max_queue=10, replay_limit=100, write_buffer_limit=100)
    pref = [QueueReader(AR_EN, 10) for _ in range(2)]
    plain, everything = QueueReader(Filter.parse({"lang": "en"}), 10), QueueReader(Filter(), 10)
    for reader in [*pref, plain, everything]:
        await h.attach(reader, None)
    en, ar = ev("flash", doc("en")), ev("flash", doc("ar"))
    h.dispatch(en)
    h.dispatch(ar)
    await asyncio.sleep(0)
    got = [await asyncio.wait_for(r.next_batch(), 1) for r in pref]
    assert got[0] is not None and got[1] is not None
    assert [f.event.type for f in got[0]] == ["flash", "update"] and got[0][1] is got[1][1]
    assert got[0][1].event.replaces == en.flash["uri"]
    plain_got = await asyncio.wait_for(plain.next_batch(), 1)
    assert plain_got is not None and [f.event for f in plain_got] == [en]
    all_got = await asyncio.wait_for(everything.next_batch(), 1)
    assert all_got is not None and [f.event for f in all_got] == [en, ar]


def test_the_table_is_bounded_in_stories_and_versions() -> None:
    """The least recently changed story goes first; in a story, withdrawn versions go before live ones."""
    table = StoryTable(max_stories=2)
    for name in ("a", "b", "c"):
        table.apply(ev("flash", doc("en", name)))
    assert len(table) == 2
    first = ev("flash", doc("ar", "big"))
    table.apply(first)
    table.apply(ev("withdraw", withdrawn_document(first.flash)))
    for _ in range(MAX_VERSIONS):
        change = table.apply(ev("flash", doc("en", "big")))
    assert change is not None and len(change.after) == MAX_VERSIONS
    kept = table._stories["big"]
    assert len(kept) == MAX_VERSIONS and first.flash["uri"] not in kept  # the withdrawn one went first
    table.apply(ev("flash", doc("en", "big")))
    assert len(table._stories["big"]) == MAX_VERSIONS  # then the oldest live one
