"""This process's readers, and the step that hands each live event to the ones whose filter it matches.

The hub never awaits a reader: ``dispatch`` encodes an event once per transport and appends it to each matching
reader's bounded queue; a reader whose queue overflows is closed (it can resume by event id). Each transport
drains its reader's queue at its own pace.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque

from .broker import Broker
from .filters import Filter
from .models import Event, event_key

logger = logging.getLogger("ticker.hub")

SEEN_WINDOW = 10_000


class Frames:
    """One event, encoded at most once per transport however many readers get it."""

    __slots__ = ("_sse", "_ws", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._ws: str | None = None
        self._sse: bytes | None = None

    @property
    def ws(self) -> str:
        if self._ws is None:
            self._ws = self.event.to_message().decode()
        return self._ws

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = self.event.to_sse()
        return self._sse


class Subscriber:
    """A reader's filter and outgoing queue. While it replays history, live events wait in ``_held``."""

    __slots__ = ("_held", "_max", "_queue", "_replay_top", "_wakeup", "close_reason", "closed", "filter")

    def __init__(self, flt: Filter, max_queue: int) -> None:
        self.filter = flt
        self.closed = False
        self.close_reason = ""
        self._max = max_queue
        self._queue: deque[Frames] = deque()
        self._wakeup = asyncio.Event()
        self._held: list[Frames] | None = None
        self._replay_top: tuple[int, int] | None = None

    def offer(self, frames: Frames) -> None:
        if self.closed:
            return
        if self._held is not None:
            self._held.append(frames)
            if len(self._held) > self._max:
                self.close("slow")
            return
        if self._replay_top is not None and event_key(frames.event.event_id) <= self._replay_top:
            return  # already sent by the replay
        self._queue.append(frames)
        if len(self._queue) > self._max:
            self.close("slow")
            return
        self._wakeup.set()

    def hold(self) -> None:
        """Start buffering live events (call before reading the history to replay)."""
        self._held = []

    def release(self, after: str, replayed: list[Event]) -> None:
        """Queue the replayed events, then the live events held meanwhile that the replay did not contain."""
        held, self._held = self._held or [], None
        self._replay_top = event_key(replayed[-1].event_id if replayed else after)
        for event in replayed:
            if self.filter.matches(event.flash):
                self._queue.append(Frames(event))
        for frames in held:
            self.offer(frames)
        if len(self._queue) > self._max:
            self.close("slow")
        self._wakeup.set()

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self._wakeup.set()

    async def next_batch(self) -> list[Frames] | None:
        """Wait for queued events and take them all; ``None`` once the subscriber is closed."""
        while not self._queue:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.closed:
            return None
        batch = list(self._queue)
        self._queue.clear()
        return batch


class Hub:
    def __init__(self, broker: Broker, *, max_queue: int, replay_limit: int) -> None:
        self.broker = broker
        self.subscribers: set[Subscriber] = set()
        self.max_queue = max_queue
        self.replay_limit = replay_limit
        self._seen: OrderedDict[str, None] = OrderedDict()

    def dispatch(self, event: Event) -> None:
        """Hand a live event to every matching reader. Called by the broker; never awaits."""
        if event.event_id in self._seen:
            return  # a re-run fan-out job: already delivered
        self._seen[event.event_id] = None
        if len(self._seen) > SEEN_WINDOW:
            self._seen.popitem(last=False)
        frames = Frames(event)
        for sub in self.subscribers:
            if sub.filter.matches(event.flash):
                sub.offer(frames)

    async def attach(self, flt: Filter, last_event_id: str | None) -> Subscriber:
        """Register a reader; with ``last_event_id``, queue the history after it first, with no gap at the seam."""
        sub = Subscriber(flt, self.max_queue)
        if last_event_id is not None:
            sub.hold()
        self.subscribers.add(sub)
        if last_event_id is not None:
            try:
                replayed = await self.broker.events_after(last_event_id, self.replay_limit)
            except BaseException:
                self.subscribers.discard(sub)
                raise
            sub.release(last_event_id, replayed)
        return sub

    def detach(self, sub: Subscriber) -> None:
        sub.close("gone")
        self.subscribers.discard(sub)
