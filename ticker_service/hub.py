"""This process's readers, indexed by filter, and the fan-out that hands each live event to the matching ones.

The fan-out never awaits a reader. Events that arrive in the same loop iteration (or, under a burst, within a few
milliseconds of the last flush) are flushed together: for each distinct filter (not each reader) the matching
events are joined once per transport, and each reader of that filter gets those bytes in one write. A reader that
cannot keep up (its socket's write buffer or its queue is over the limit) is closed and resumes by event id.

The writes of one fan-out go out in slices of at most ``slice_seconds`` each; between two slices the event loop
serves everything else (editors' POSTs, the pub/sub listener, accepts). A flash that arrives while the previous
one is still being written does not wait for it: a few readers already written get the new flash first, then
those still owed the previous one get both in one write, in order, then the other readers already written
(``_merge``); each reader gets each event once, in order.

Readers whose filter prefers languages (``lang=ar,en``) get one version of each story (``stories.py``): the hub keeps
the live versions of recent stories, and for such a filter decides once what its readers get of an event of a story
(the event, an ``update`` that ``replaces`` the version they had, or nothing); other filters take the path above.

Two kinds of reader share the replay/live logic of :class:`Reader`: :class:`TransportReader`, written to directly
by the fan-out (the native WebSocket/SSE protocols), and :class:`QueueReader`, drained by an ASGI endpoint's task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict

from .broker import Broker, HistoryGap
from .errors import BrokerUnavailable
from .events import Event, event_key, split_event_id
from .filters import Filter
from .flashes import flash_id_of
from .ops import metrics
from .readers import Reader, TransportReader, write_run
from .stories import Change, StoryTable, decide, prefers, select
from .wire import Batch, Frames

logger = logging.getLogger("ticker.hub")

RESET_FLASHES = 20  # current flashes sent in a ``reset``
PRIME_FLASHES = 1000  # current flashes read at start, to learn the live versions of stories
CLOCK_EVERY = 32  # readers written between two looks at the clock (a look costs about as much as a write's bookkeeping)

# One run of a fan-out: the same bytes for these readers.
Run = tuple[Batch, tuple[Reader, ...]]


def without_killed(replayed: list[Event]) -> list[Event]:
    """A replay without the events before a withdrawal of the flashes it withdraws: a resuming reader gets the
    ``withdraw`` (a no-op for a flash it never showed), never a killed flash on its screen, not even for a moment.

    The last event is always kept (no event of a flash comes after its withdrawal), so the reader's resume point
    is the same as with the whole replay.
    """
    killed = {flash_id_of(e.flash) for e in replayed if e.type == "withdraw"}
    if not killed:
        return replayed
    return [e for e in replayed if e.type in ("withdraw", "reset") or flash_id_of(e.flash) not in killed]


class Hub:
    def __init__(
        self,
        broker: Broker,
        *,
        max_queue: int,
        replay_limit: int,
        write_buffer_limit: int,
        coalesce: float = 0.0,
        slice_seconds: float = 0.0,
    ) -> None:
        self.broker = broker
        # A fan-out writes for at most this long before the loop serves other work (0: all in one go).
        self.slice_seconds = slice_seconds
        # Under a burst, events arriving within ``coalesce`` seconds of a flush wait for the next one, so that each
        # reader gets several in one write (a system call per reader is most of the fan-out's cost). An event after
        # a quiet spell still goes out at once.
        self.coalesce = coalesce
        self.max_queue = max_queue
        self.replay_limit = replay_limit  # also the window: recent events kept for dedup and replay from memory
        self.write_buffer_limit = write_buffer_limit
        self.groups: dict[Filter, set[Reader]] = {}
        self.count = 0
        self.census: Counter[tuple[str, str]] = Counter()  # readers by (transport, language label)
        self._window: OrderedDict[str, Event] = OrderedDict()
        self._pending: list[Frames] = []
        # Stories: their live versions, and how each pending event changed its story (by event id). Readers that
        # prefer languages (``lang=ar,en``) get one version of each story, decided once per filter.
        self.stories = StoryTable()
        self._changes: dict[str, Change] = {}
        self._flushed_at = float("-inf")
        self._heartbeat: asyncio.TimerHandle | None = None
        self._attaching: set[asyncio.Task[None]] = set()  # replays under way (a task needs a reference)
        # The fan-out being written: its runs, and the next reader to write (run index, position in it).
        self._runs: list[Run] = []
        self._cursor = (0, 0)
        self._resume: asyncio.Handle | None = None  # the next slice, when the fan-out did not fit in one

    # -- fan-out -----------------------------------------------------------------------------------------------
    def dispatch(self, event: Event) -> None:
        """Take a live event from the broker; it goes out with the others of this loop iteration."""
        if event.event_id in self._window:
            return  # a re-run fan-out job, or an event the hub's catch-up already delivered
        if self._window and split_event_id(next(reversed(self._window)))[0] != split_event_id(event.event_id)[0]:
            self._window.clear()  # a new epoch: the history was lost, and the window must not bridge the gap
        self._window[event.event_id] = event
        if len(self._window) > self.replay_limit:
            self._window.popitem(last=False)
        change = self.stories.apply(event)
        if change is not None:
            self._changes[event.event_id] = change
        if not self._pending:
            loop = asyncio.get_running_loop()
            due = self._flushed_at + self.coalesce
            if loop.time() < due:
                loop.call_at(due, self._flush)
            else:
                loop.call_soon(self._flush)
        self._pending.append(Frames.of(event))

    def _flush(self) -> None:
        if not self._pending:
            return  # flushed already, by the slice that found these events waiting
        self._flushed_at = asyncio.get_running_loop().time()
        pending, self._pending = self._pending, []
        changes, self._changes = self._changes, {}
        variants: dict[tuple[str, str, str | None], Frames] = {}
        runs: list[Run] = []
        delivered = 0
        for flt, readers in list(self.groups.items()):
            if changes and prefers(flt):
                matching = self._chosen(flt, pending, changes, variants)
            else:
                matching = [f for f in pending if flt.matches(f.event.flash)]
            if matching:
                runs.append((Batch(matching), tuple(readers)))
                delivered += len(matching) * len(readers)
        metrics.observe_fanout([f.key[0] for f in pending], delivered)
        if self._runs:
            runs = self._merge(runs)
        self._runs, self._cursor = runs, (0, 0)
        self._write()

    def _merge(self, runs: list[Run]) -> list[Run]:
        """The new fan-out ``runs`` while the previous one is not wholly written. A few of the readers it has
        reached get the new events first (a new flash is on screens at once); then those it still owes, each
        getting what it owes and what is new in one write (the previous events first, each once); then the rest
        of the reached ones. Owed readers go before most reached ones so that, when flashes come faster than the
        fan-out, the same readers are not left behind flash after flash."""
        owed: dict[Reader, Batch] = {}
        index, position = self._cursor
        for batch, readers in self._runs[index:]:
            for reader in readers[position:]:
                owed[reader] = batch
            position = 0
        head: list[Run] = []
        tail: list[Run] = []
        room = CLOCK_EVERY  # readers in the head: one look at the clock's worth
        joined: dict[tuple[int, int], tuple[Batch, list[Reader]]] = {}
        for batch, readers in runs:
            reached = tuple(r for r in readers if r not in owed)
            none_owed = len(reached) == len(readers)
            if room and reached:
                head.append((batch, reached[:room]))
                reached, room = reached[room:], max(0, room - len(reached))
            if reached:
                tail.append((batch, reached))
            if none_owed:
                continue
            for reader in readers:
                previous = owed.pop(reader, None)
                if previous is not None:
                    key = (id(previous), id(batch))
                    if key not in joined:
                        joined[key] = (Batch(previous.frames + batch.frames), [])
                    joined[key][1].append(reader)
        for reader, previous in owed.items():  # owed the previous events, with nothing new for them
            key = (id(previous), 0)
            if key not in joined:
                joined[key] = (previous, [])
            joined[key][1].append(reader)
        return [*head, *((batch, tuple(readers)) for batch, readers in joined.values()), *tail]

    def _write(self) -> None:
        """Write the current fan-out for one slice; the rest goes on in a later loop iteration. Events that came
        in meanwhile (and are due) are flushed first: their fan-out takes over the rest of this one."""
        loop = asyncio.get_running_loop()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._pending and loop.time() >= self._flushed_at + self.coalesce:
            self._flush()
            return
        runs = self._runs
        index, position = self._cursor
        deadline = time.perf_counter() + self.slice_seconds if self.slice_seconds else None
        while index < len(runs):
            batch, readers = runs[index]
            stop = min(len(readers), position + CLOCK_EVERY)
            write_run(batch, readers[position:stop])
            index, position = (index, stop) if stop < len(readers) else (index + 1, 0)
            if deadline is not None and index < len(runs) and time.perf_counter() >= deadline:
                self._cursor = (index, position)
                self._resume = loop.call_soon(self._write)
                metrics.FANOUT_SLICES.inc()
                return
        self._runs, self._cursor = [], (0, 0)

    @staticmethod
    def _chosen(
        flt: Filter,
        pending: list[Frames],
        changes: dict[str, Change],
        variants: dict[tuple[str, str, str | None], Frames],
    ) -> list[Frames]:
        """The pending events as readers that prefer languages see them: one version per story. A replacing
        ``update`` is encoded once for every filter that gets it (``variants``)."""
        out: list[Frames] = []
        for frames in pending:
            event = frames.event
            change = changes.get(event.event_id)
            if change is None:
                if flt.matches(event.flash):
                    out.append(frames)
                continue
            shown = decide(flt, event, change)
            if shown is event:
                out.append(frames)
            elif shown is not None:
                key = (event.event_id, shown.flash["uri"], shown.replaces)
                if key not in variants:
                    variants[key] = Frames(shown)
                out.append(variants[key])
        return out

    def forget(self) -> None:
        """The history was lost: the window must not answer resumes from before the loss."""
        self._window.clear()

    async def prime(self) -> None:
        """Learn the live versions of recent stories, so that one published before this hub started counts when a
        reader that prefers languages is to get a better (or the next best) version of it."""
        try:
            docs, _ = await self.broker.recent(PRIME_FLASHES)
        except BrokerUnavailable:
            logger.warning("could not read the current flashes: stories start from the next events")
            return
        self.stories.prime(docs)

    # -- readers -----------------------------------------------------------------------------------------------
    def add(self, reader: Reader) -> None:
        reader.attached = True
        self.groups.setdefault(reader.filter, set()).add(reader)
        self.count += 1
        self._census(reader, 1)

    def remove(self, reader: Reader) -> None:
        group = self.groups.get(reader.filter)
        if group is not None and reader in group:
            reader.attached = False
            group.discard(reader)
            self.count -= 1
            self._census(reader, -1)
            if not group:
                del self.groups[reader.filter]

    def _census(self, reader: Reader, change: int) -> None:
        labels, gauge = metrics.reader_census(reader.transport, reader.filter.languages)
        self.census[labels] += change
        gauge.inc(change)

    def refilter(self, reader: Reader, flt: Filter) -> None:
        """Change a connected reader's filter (a WebSocket ``subscribe`` message)."""
        self.remove(reader)
        reader.filter = flt
        if not reader.closed:
            self.add(reader)

    async def attach(self, reader: Reader, last_event_id: str | None) -> None:
        """Add a reader; with ``last_event_id``, send the history after it first, with no gap at the seam."""
        if last_event_id is not None:
            reader.hold()
        self.add(reader)
        if last_event_id is not None:
            try:
                replayed = self.recent_after(last_event_id)
                source = "memory"
                if replayed is None:
                    replayed = await self._history_after(reader, last_event_id)
                    source = "reset" if replayed and replayed[0].type == "reset" else "history"
                metrics.REPLAYED.labels(source).inc(len(replayed))
            except BaseException:
                self.remove(reader)
                raise
            self._release(reader, last_event_id, replayed)

    def _release(self, reader: Reader, last_event_id: str, replayed: list[Event]) -> None:
        """Hand a reader its replay (live events held meanwhile follow it): the one place for both paths. Killed
        flashes never reach it, and a reader preferring languages gets one version per story."""
        replayed = without_killed(replayed)
        reader.release(last_event_id, replayed, self._replay_frames(reader.filter, last_event_id, replayed))

    async def _history_after(self, reader: Reader, last_event_id: str) -> list[Event]:
        """The history after ``last_event_id``; if it cannot say (lost or trimmed) or has more than the replay
        limit, a ``reset`` with the current flashes that match the reader, and the event id to go on from.

        A replay cut at the limit would leave the reader without the rest (a withdrawal among it, the flash still
        on screen); the reset's current state has no withdrawn flash."""
        try:
            replayed = await self.broker.events_after(last_event_id, self.replay_limit + 1)
            if len(replayed) <= self.replay_limit:
                return replayed
        except HistoryGap:
            pass
        docs, last = await self.broker.recent(1000)
        flashes = select(reader.filter, docs)[:RESET_FLASHES]
        return [Event(last, "reset", {"flashes": flashes})]

    def _replay_frames(self, flt: Filter, after: str, replayed: list[Event]) -> list[Frames] | None:
        """The replay as a reader that prefers languages gets it (one version per story, as it would have live);
        ``None`` for any other reader, or a ``reset`` (whose flashes are already selected)."""
        if not prefers(flt) or (replayed and replayed[0].type == "reset"):
            return None
        out: list[Frames] = []
        for event, change in self.stories.replay(after, replayed):
            if change is None:
                shown = event if flt.matches(event.flash) else None
            else:
                shown = decide(flt, event, change)
            if shown is not None:
                out.append(Frames(shown))
        return out

    def connect(self, reader: Reader, last_event_id: str | None) -> None:
        """``attach`` for a transport that cannot await. A resume the in-memory window answers (every reader of a
        reconnect storm, after a restart or a network blip) is served at once, with no task; one that needs the
        history runs as a task the hub keeps.

        A reader whose history cannot be read is closed with the reason ``history`` (it retries later).
        """
        if last_event_id is None:
            self.add(reader)
            return
        replayed = self.recent_after(last_event_id)
        if replayed is not None:  # nothing can arrive in between: no live events to hold back
            self.add(reader)
            metrics.REPLAYED.labels("memory").inc(len(replayed))
            self._release(reader, last_event_id, replayed)
            return
        task = asyncio.get_running_loop().create_task(self._attach_or_close(reader, last_event_id))
        self._attaching.add(task)
        task.add_done_callback(self._attaching.discard)

    async def _attach_or_close(self, reader: Reader, last_event_id: str) -> None:
        try:
            await self.attach(reader, last_event_id)
        except BrokerUnavailable:
            reader.close("history")

    def recent_after(self, event_id: str) -> list[Event] | None:
        """The events after ``event_id`` from the in-memory window, or ``None`` if it does not reach back that far.

        The window holds every event since its oldest one, in order (the broker delivers in history order and
        catches up after a lost subscription), so a reconnect storm is served without a Redis read per reader.
        """
        if not self._window:
            return None
        oldest = next(iter(self._window))
        after = event_key(event_id)
        if split_event_id(event_id)[0] != split_event_id(oldest)[0] or after < event_key(oldest):
            return None
        newer: list[Event] = []
        for event in reversed(self._window.values()):
            if event_key(event.event_id) <= after:
                break
            newer.append(event)
        newer.reverse()
        return newer[: self.replay_limit]

    def detach(self, reader: Reader) -> None:
        self.remove(reader)
        reader.close("gone")

    # -- keepalive for native readers ------------------------------------------------------------------------
    def start_heartbeat(self, interval: float) -> None:
        """Every ``interval`` seconds, each native reader's keepalive (one timer for all of them, not one each)."""
        self._heartbeat = asyncio.get_running_loop().call_later(interval, self._beat, interval)

    def _beat(self, interval: float) -> None:
        for readers in list(self.groups.values()):
            for reader in tuple(readers):
                if isinstance(reader, TransportReader) and reader.beat is not None:
                    reader.beat()
        self.start_heartbeat(interval)

    def stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None

    def close_all(self, reason: str) -> None:
        for readers in list(self.groups.values()):
            for reader in tuple(readers):
                reader.close(reason)
