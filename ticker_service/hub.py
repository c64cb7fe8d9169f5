"""This process's readers, indexed by filter, and the fan-out that hands each live event to the matching ones.

The fan-out never awaits a reader. Events that arrive in the same loop iteration (or, under a burst, within a few
milliseconds of the last flush) are flushed together: for each distinct filter (not each reader) the matching
events are joined once per transport, and each reader of that filter gets those bytes in one write. A reader that
cannot keep up (its socket's write buffer or its queue is over the limit) is closed and resumes by event id.

Two kinds of reader share the replay/live logic of :class:`Reader`: :class:`TransportReader`, written to directly
by the fan-out (the native WebSocket/SSE protocols), and :class:`QueueReader`, drained by an ASGI endpoint's task.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

from . import metrics
from .broker import Broker, HistoryGap
from .filters import Filter
from .frames import http_chunk, ws_frame
from .models import Event, event_key, split_event_id
from .problems import BrokerUnavailable

logger = logging.getLogger("ticker.hub")

RESET_FLASHES = 20  # current flashes sent in a ``reset``
HELD_LIMIT = 1_000  # live batches held back during one reader's replay before it counts as too slow
_connection_ids = itertools.count(1)


class Frames:
    """One event, encoded at most once per transport however many readers get it."""

    __slots__ = ("_sse", "_ws", "event", "key")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.key = event_key(event.event_id)
        self._ws: bytes | None = None
        self._sse: bytes | None = None

    @property
    def ws_text(self) -> bytes:
        """The JSON message (the payload of the WebSocket text frame)."""
        if self._ws is None:
            self._ws = self.event.to_message()
        return self._ws

    @property
    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = self.event.to_sse()
        return self._sse


class Batch:
    """Events for the readers of one filter, joined into wire bytes once per transport."""

    __slots__ = ("_sse_chunk", "_ws_frames", "frames")

    def __init__(self, frames: list[Frames]) -> None:
        self.frames = frames
        self._ws_frames: bytes | None = None
        self._sse_chunk: bytes | None = None

    @property
    def ws_frames(self) -> bytes:
        if self._ws_frames is None:
            self._ws_frames = b"".join(ws_frame(f.ws_text) for f in self.frames)
        return self._ws_frames

    @property
    def sse_chunk(self) -> bytes:
        if self._sse_chunk is None:
            self._sse_chunk = http_chunk(b"".join(f.sse for f in self.frames))
        return self._sse_chunk


class Reader:
    """A reader's filter and its replay/live seam. While it replays history, live batches wait in ``_held``."""

    __slots__ = ("_held", "_replay_top", "close_reason", "closed", "conn_id", "filter", "limit")
    transport = "asgi"  # for metrics: how the reader is served

    def __init__(self, flt: Filter, limit: int) -> None:
        self.conn_id = f"c{next(_connection_ids)}"  # for logs: unique in this process
        self.filter = flt
        self.limit = limit
        self.closed = False
        self.close_reason = ""
        self._held: list[Batch] | None = None
        self._replay_top: tuple[int, int] | None = None

    def offer(self, batch: Batch, *, live: bool = True) -> None:
        if self.closed:
            return
        if self._held is not None:
            self._held.append(batch)
            if len(self._held) > HELD_LIMIT:
                self.close("slow")
            return
        top = self._replay_top
        if top is not None:
            fresh = [f for f in batch.frames if f.key > top]
            if not fresh:
                return  # already sent by the replay
            if len(fresh) == len(batch.frames):
                if live:
                    self._replay_top = None  # past the seam for good: live events come in history order
            else:
                batch = Batch(fresh)
        self.emit(batch)

    def emit(self, batch: Batch) -> None:
        raise NotImplementedError

    def hold(self) -> None:
        """Start holding live events back (call before reading the history to replay)."""
        self._held = []

    def release(self, after: str, replayed: list[Event]) -> None:
        """Send the replayed events, then the live events held meanwhile that the replay did not contain.

        ``replayed`` may instead be a single ``reset`` event, which goes out as it is.
        """
        held, self._held = self._held or [], None
        self._replay_top = event_key(replayed[-1].event_id if replayed else after)
        matching = [Frames(e) for e in replayed if e.type == "reset" or self.filter.matches(e.flash)]
        if matching and not self.closed:
            self.emit(Batch(matching))
        for batch in held:
            self.offer(batch, live=False)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            metrics.count_disconnect(reason)
            if reason in ("slow", "keepalive"):
                logger.info(
                    "reader closed", extra={"conn_id": self.conn_id, "reason": reason, "transport": self.transport}
                )
            self.on_close(reason)

    def on_close(self, reason: str) -> None:
        """What the transport does when the reader is closed (slow, shutdown, gone)."""


class Sink(Protocol):
    """The part of an asyncio transport a :class:`TransportReader` needs."""

    def write(self, data: bytes) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class TransportReader(Reader):
    """A reader whose socket the fan-out writes to directly: WebSocket frames or SSE chunks."""

    __slots__ = ("_closer", "beat", "sink", "websocket")

    def __init__(
        self,
        flt: Filter,
        limit: int,
        sink: Sink,
        *,
        websocket: bool,
        closer: Callable[[str], None],
        beat: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(flt, limit)
        self.sink = sink
        self.websocket = websocket
        self._closer = closer
        self.beat = beat  # keepalive, called by the hub's one timer: a ping, or an SSE comment

    @property
    def transport(self) -> str:  # type: ignore[override]
        return "websocket" if self.websocket else "sse"

    def emit(self, batch: Batch) -> None:
        if self.sink.get_write_buffer_size() > self.limit:
            self.close("slow")
            return
        self.sink.write(batch.ws_frames if self.websocket else batch.sse_chunk)

    def on_close(self, reason: str) -> None:
        self._closer(reason)


class QueueReader(Reader):
    """A reader drained by a task (the ASGI endpoints): a bounded queue, closed when it overflows."""

    __slots__ = ("_queue", "_wakeup")

    def __init__(self, flt: Filter, limit: int) -> None:
        super().__init__(flt, limit)
        self._queue: deque[Frames] = deque()
        self._wakeup = asyncio.Event()

    def emit(self, batch: Batch) -> None:
        self._queue.extend(batch.frames)
        if len(self._queue) > self.limit:
            self.close("slow")
            return
        self._wakeup.set()

    def on_close(self, reason: str) -> None:
        self._wakeup.set()

    async def next_batch(self) -> list[Frames] | None:
        """Wait for queued events and take them all; ``None`` once the reader is closed."""
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
    def __init__(
        self,
        broker: Broker,
        *,
        max_queue: int,
        replay_limit: int,
        write_buffer_limit: int,
        send_buffer: int = 0,
        coalesce: float = 0.0,
    ) -> None:
        self.broker = broker
        # Under a burst, events arriving within ``coalesce`` seconds of a flush wait for the next one, so that each
        # reader gets several in one write (a system call per reader is most of the fan-out's cost). An event after
        # a quiet spell still goes out at once.
        self.coalesce = coalesce
        self.send_buffer = send_buffer  # SO_SNDBUF for native readers' sockets (0: the kernel's default)
        self.max_queue = max_queue
        self.replay_limit = replay_limit  # also the window: recent events kept for dedup and replay from memory
        self.write_buffer_limit = write_buffer_limit
        self.groups: dict[Filter, set[Reader]] = {}
        self.count = 0
        self.census: Counter[tuple[str, str]] = Counter()  # readers by (transport, language label)
        self._window: OrderedDict[str, Event] = OrderedDict()
        self._pending: list[Frames] = []
        self._flushed_at = float("-inf")
        self._heartbeat: asyncio.TimerHandle | None = None
        self._attaching: set[asyncio.Task[None]] = set()  # replays under way (a task needs a reference)

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
        if not self._pending:
            loop = asyncio.get_running_loop()
            due = self._flushed_at + self.coalesce
            if loop.time() < due:
                loop.call_at(due, self._flush)
            else:
                loop.call_soon(self._flush)
        self._pending.append(Frames(event))

    def _flush(self) -> None:
        self._flushed_at = asyncio.get_running_loop().time()
        pending, self._pending = self._pending, []
        delivered = 0
        for flt, readers in list(self.groups.items()):
            matching = [f for f in pending if flt.matches(f.event.flash)]
            if matching:
                batch = Batch(matching)
                delivered += len(matching) * len(readers)
                for reader in tuple(readers):
                    reader.offer(batch)
        metrics.observe_fanout([f.key[0] for f in pending], delivered)

    def forget(self) -> None:
        """The history was lost: the window must not answer resumes from before the loss."""
        self._window.clear()

    # -- readers -----------------------------------------------------------------------------------------------
    def add(self, reader: Reader) -> None:
        self.groups.setdefault(reader.filter, set()).add(reader)
        self.count += 1
        self._census(reader, 1)

    def remove(self, reader: Reader) -> None:
        group = self.groups.get(reader.filter)
        if group is not None and reader in group:
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
            reader.release(last_event_id, replayed)

    async def _history_after(self, reader: Reader, last_event_id: str) -> list[Event]:
        """The history after ``last_event_id``; if it cannot say (lost or trimmed), a ``reset`` with the current
        flashes that match the reader, and the event id to go on from."""
        try:
            return await self.broker.events_after(last_event_id, self.replay_limit)
        except HistoryGap:
            docs, last = await self.broker.recent(1000)
            flashes = [doc for doc in docs if reader.filter.matches(doc)][:RESET_FLASHES]
            return [Event(last, "reset", {"flashes": flashes})]

    def connect(self, reader: Reader, last_event_id: str | None) -> None:
        """``attach`` for a transport that cannot await: the replay, if any, runs as a task the hub keeps.

        A reader whose history cannot be read is closed with the reason ``history`` (it retries later).
        """
        if last_event_id is None:
            self.add(reader)
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
