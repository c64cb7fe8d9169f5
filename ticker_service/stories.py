"""One story, many languages: a reader's ordered language preference picks one version of each story.

A flash may name its story (ninjs ``events: [{"id": "<story>"}]``); the language versions of one story share it. A
reader, device or list request whose ``lang`` gives two or more ranges (``lang=ar,en``) states an order of
preference: of each story it gets one version, the best live one that matches its filter — the one whose language
matches the earliest range, the oldest flash on a tie. A plain ``lang=en``, or a flash without a story, is filtered
as before.

The best version is a pure function of the story's live versions, so the hub decides once per filter, not per
reader: :class:`StoryTable` knows the live versions of recent stories, turns each event into a :class:`Change`
(the live versions just before and just after it), and :func:`decide` says what a filter's readers get for it —
the event itself, an ``update`` carrying the version that is now best with the ``uri`` of the one it ``replaces``,
or nothing.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .events import Event, event_key
from .filters import Filter
from .flashes import Document

STORY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_STORIES = 5_000  # stories a hub remembers (the least recently changed are forgotten first)
MAX_VERSIONS = 64  # versions remembered per story (withdrawn ones are forgotten first, then the oldest)
_BEFORE_ALL = (0, 0)  # "since" of a version the hub learnt from the current state, not from its event


def story_of(doc: Document) -> str | None:
    """The story a flash belongs to (its first ninjs event's id), if it names one."""
    events = doc.get("events")
    if not events or not isinstance(events, list):
        return None
    story = events[0].get("id") if isinstance(events[0], dict) else None
    return story if isinstance(story, str) else None


def prefers(flt: Filter) -> bool:
    """Whether ``flt`` states an order of preference between languages (two ranges or more)."""
    return len(flt.languages) > 1


def is_live(doc: Document) -> bool:
    """A version readers may be shown: neither withdrawn nor withheld."""
    return bool(doc.get("pubStatus", "usable") == "usable")


def _order(flt: Filter, doc: Document) -> tuple[int, str]:
    """Sort key of a version for ``flt``: the rank of the first range its language matches, then its ``uri`` (flash
    ids begin with their creation time, so on a tie the oldest flash wins)."""
    tag = str(doc.get("language", "")).lower()
    for rank, wanted in enumerate(flt.languages):
        if tag == wanted or tag.startswith(wanted + "-"):
            return rank, str(doc.get("uri", ""))
    return len(flt.languages), str(doc.get("uri", ""))


def best(flt: Filter, docs: Iterable[Document]) -> Document | None:
    """The version of one story a reader with ``flt`` is shown, among ``docs``; ``None`` if none is live and matches."""
    candidates = [doc for doc in docs if is_live(doc) and flt.matches(doc)]
    return min(candidates, key=lambda doc: _order(flt, doc), default=None)


def select(flt: Filter, docs: Iterable[Document]) -> list[Document]:
    """The ``docs`` that match ``flt``, in their order, keeping only the best version of each story when ``flt``
    prefers (``GET /v1/flashes``, the ``reset`` snapshot)."""
    matching = [doc for doc in docs if flt.matches(doc)]
    if not prefers(flt):
        return matching
    chosen: dict[str, Document] = {}
    for doc in matching:
        story = story_of(doc)
        if story is not None and (story not in chosen or _order(flt, doc) < _order(flt, chosen[story])):
            chosen[story] = doc
    return [doc for doc in matching if (story := story_of(doc)) is None or chosen[story] is doc]


@dataclass(frozen=True, slots=True)
class Change:
    """One story's live versions just before and just after an event."""

    before: tuple[Document, ...]
    after: tuple[Document, ...]


def decide(flt: Filter, event: Event, change: Change) -> Event | None:
    """What readers with ``flt`` get for ``event``, which changed its story by ``change``.

    They had ``best(before)`` and are to have ``best(after)``: when that stays the event's own version (a correction
    of it), or goes from nothing to it, they get the event as it is; when it moves from one version to another,
    an ``update`` with the new one and the ``uri`` of the one it replaces; when none is left (the version they had
    was withdrawn), the event (the ``withdraw``); when it stays on another version, nothing.
    """
    had, gets = best(flt, change.before), best(flt, change.after)
    uri = event.flash.get("uri")
    had_uri = None if had is None else had["uri"]
    gets_uri = None if gets is None else gets["uri"]
    if had_uri == gets_uri:
        if gets_uri == uri:
            return event
        # Nothing shown before or after: only an event about a version this hub did not know (not in its table)
        # goes out, as it would without a story.
        return event if gets_uri is None and flt.matches(event.flash) else None
    if gets is None:
        return event if flt.matches(event.flash) else None
    if had is None:
        return event if gets_uri == uri else Event(event.event_id, "update", gets)
    return Event(event.event_id, "update", gets, replaces=had_uri)


class _Version:
    """A version of a story as the hub knows it: its current document and when it entered and left the live set."""

    __slots__ = ("doc", "since", "until")

    def __init__(self, doc: Document, since: tuple[int, int]) -> None:
        self.doc = doc
        self.since = since  # position of the event that made it a version (_BEFORE_ALL: known from the state)
        self.until: tuple[int, int] | None = None  # position of the event that took it out of the live set


class StoryTable:
    """The versions of recent stories in one hub, kept up to date by the events it dispatches."""

    def __init__(self, max_stories: int = MAX_STORIES) -> None:
        self.max_stories = max_stories
        self._stories: OrderedDict[str, dict[str, _Version]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stories)

    def prime(self, docs: Iterable[Document]) -> None:
        """Learn the current live versions (from the broker's state, at start) that no event has told of yet."""
        for doc in docs:
            story = story_of(doc)
            if story is None or not is_live(doc):
                continue
            versions = self._versions(story)
            versions.setdefault(doc["uri"], _Version(doc, _BEFORE_ALL))

    def apply(self, event: Event) -> Change | None:
        """Record ``event``; its story's change, or ``None`` for an event of a flash without a story."""
        if event.type == "reset":
            return None
        story = story_of(event.flash)
        if story is None:
            return None
        versions = self._versions(story)
        before = tuple(v.doc for v in versions.values() if v.until is None)
        key = event_key(event.event_id)
        uri = event.flash["uri"]
        version = versions.get(uri)
        if version is None:
            version = versions[uri] = _Version(event.flash, key if event.type == "flash" else _BEFORE_ALL)
        version.doc = event.flash
        if is_live(event.flash):
            version.until = None
        elif version.until is None:
            version.until = key
        if len(versions) > MAX_VERSIONS:
            self._shed(versions)
        return Change(before, tuple(v.doc for v in versions.values() if v.until is None))

    @staticmethod
    def _shed(versions: dict[str, _Version]) -> None:
        """Keep a story's table bounded (one story with thousands of versions must not slow every event of it)."""
        gone = [uri for uri, v in versions.items() if v.until is not None]
        gone += [uri for uri, v in versions.items() if v.until is None]  # then live ones, oldest first
        for uri in gone[: len(versions) - MAX_VERSIONS]:
            del versions[uri]

    def replay(self, after: str, events: Iterable[Event]) -> Iterator[tuple[Event, Change | None]]:
        """``events`` (the history after event id ``after``), each with its story's change as a reader that had
        everything up to ``after`` sees it: the live set starts from the versions live at ``after``."""
        start = event_key(after)
        scratch: dict[str, dict[str, Document]] = {}
        for event in events:
            story = None if event.type == "reset" else story_of(event.flash)
            if story is None:
                yield event, None
                continue
            live = scratch.get(story)
            if live is None:
                live = scratch[story] = self._live_at(story, start)
            before = tuple(live.values())
            if is_live(event.flash):
                live[event.flash["uri"]] = event.flash
            else:
                live.pop(event.flash["uri"], None)
            yield event, Change(before, tuple(live.values()))

    def _live_at(self, story: str, key: tuple[int, int]) -> dict[str, Document]:
        """The versions of ``story`` that were live at position ``key`` (each with its current document)."""
        out: dict[str, Document] = {}
        for uri, version in self._stories.get(story, {}).items():
            if version.since <= key and (version.until is None or version.until > key):
                out[uri] = version.doc if version.until is None else {**version.doc, "pubStatus": "usable"}
        return out

    def _versions(self, story: str) -> dict[str, _Version]:
        versions = self._stories.get(story)
        if versions is None:
            versions = self._stories[story] = {}
            if len(self._stories) > self.max_stories:
                self._stories.popitem(last=False)
        else:
            self._stories.move_to_end(story)
        return versions
