"""A hub's readers: a filter and the replay/live seam, and the two ways of handing them bytes.

:class:`TransportReader` is written to directly by the fan-out (the native WebSocket/SSE protocols);
:class:`QueueReader` is drained by an ASGI endpoint's task. While a reader replays history, live batches wait.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .events import Event, event_key
from .filters import Filter
from .ops import metrics
from .wire import Batch, Frames

logger = logging.getLogger("ticker.hub")

HELD_LIMIT = 1_000  # live batches held back during one reader's replay before it counts as too slow
_connection_ids = itertools.count(1)


class Reader:
    """A reader's filter and its replay/live seam. While it replays history, live batches wait in ``_held``."""

    __slots__ = ("_attached", "_held", "_replay_top", "close_reason", "closed", "conn_id", "direct", "filter", "limit")
    transport = "asgi"  # for metrics: how the reader is served
    writes_directly = False  # a :class:`TransportReader`: the fan-out may write its socket without ``offer``

    def __init__(self, flt: Filter, limit: int) -> None:
        self.conn_id = f"c{next(_connection_ids)}"  # for logs: unique in this process
        self.filter = flt
        self.limit = limit
        self.closed = False
        self._attached = False
        self.close_reason = ""
        self._held: list[Batch] | None = None
        self._replay_top: tuple[int, int] | None = None
        # Attached, open, not holding live events back and past its replay's seam: what the fan-out has for it goes
        # straight to its socket (``write_run``). Kept up to date at each of those changes.
        self.direct = False

    @property
    def attached(self) -> bool:
        """In the hub's index: a fan-out still being written skips a reader removed since."""
        return self._attached

    @attached.setter
    def attached(self, value: bool) -> None:
        self._attached = value
        self._settle()

    def _settle(self) -> None:
        self.direct = (
            self.writes_directly
            and self._attached
            and not self.closed
            and self._held is None
            and self._replay_top is None
        )

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
                    self._settle()
            else:
                batch = Batch(fresh)
        self.emit(batch)

    def emit(self, batch: Batch) -> None:
        raise NotImplementedError

    def hold(self) -> None:
        """Start holding live events back (call before reading the history to replay)."""
        self._held = []
        self.direct = False

    def release(self, after: str, replayed: list[Event], frames: list[Frames] | None = None) -> None:
        """Send the replayed events, then the live events held meanwhile that the replay did not contain.

        ``replayed`` may instead be a single ``reset`` event, which goes out as it is. ``frames``, when given, is
        what to send of the replay (the hub's choice of one version per story), instead of the matching events.
        """
        held, self._held = self._held or [], None
        self._replay_top = event_key(replayed[-1].event_id if replayed else after)
        self._settle()
        if frames is not None:
            matching = frames
        else:
            matching = [Frames.of(e) for e in replayed if e.type == "reset" or self.filter.matches(e.flash)]
        if matching and not self.closed:
            self.emit(Batch(matching))
        for batch in held:
            self.offer(batch, live=False)

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.direct = False
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
    writes_directly = True

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
        # write_run inlines these lines for readers that are ``direct`` (the fan-out's hot path): change both.
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


def write_run(batch: Batch, readers: Sequence[Reader]) -> None:
    """Hand ``batch`` to each of ``readers`` still attached: what ``offer`` then ``emit`` do, with the common case
    (a :class:`TransportReader` that is ``direct``) inlined. At 1,000 readers a flash is 1,000 of these, and the two
    method calls and the property per reader were about as much CPU as the socket write's own Python side."""
    ws = sse = b""  # the batch's encodings, made on first use (a run may have readers of one transport only)
    for reader in readers:
        if reader.direct:
            if TYPE_CHECKING:  # ``direct`` only ever holds for one (no run-time check in this loop)
                assert isinstance(reader, TransportReader)
            sink = reader.sink
            if sink.get_write_buffer_size() > reader.limit:
                reader.close("slow")
            elif reader.websocket:
                sink.write(ws or (ws := batch.ws_frames))
            else:
                sink.write(sse or (sse := batch.sse_chunk))
        elif reader.attached:  # not removed since the flush (the socket may be closing)
            reader.offer(batch)
