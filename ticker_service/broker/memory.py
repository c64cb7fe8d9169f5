"""In-process broker for the embedded mode (and tests): history in memory, fan-out as a task, not an arq job."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from ..events import Event, EventType, event_key, make_event_id, new_epoch, split_event_id
from ..flashes import Document, flash_id_of
from ..settings import Settings
from .base import Claim, ClaimLost, HistoryGap, LiveHandler, VersionConflict

PENDING_TTL_SECONDS = 10.0


class MemoryBroker:
    def __init__(self, settings: Settings, *, run_fanout: bool = True) -> None:
        self.settings = settings
        self.run_fanout = run_fanout
        self.epoch = new_epoch()  # the history lives and dies with this process
        self._history: deque[Event] = deque()
        self._trimmed = (0, 0)  # the largest position trimmed from the history
        self._flashes: OrderedDict[str, Document] = OrderedDict()  # by first creation, oldest first
        self._event_ids: dict[tuple[str, str], str] = {}  # (flash id, version) -> event id
        self._claims: dict[str, tuple[float, str, Document | None, str]] = {}  # expiry, fingerprint, doc, token
        self._handlers: list[LiveHandler] = []
        self._last = (0, 0)
        self._published = (0, 0)
        self._tasks: set[asyncio.Task[str | None]] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def ready(self) -> bool:
        return True

    def _next_event_id(self) -> str:
        ms = int(time.time() * 1000)
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return make_event_id(self.epoch, f"{self._last[0]}-{self._last[1]}")

    def _trim(self) -> None:
        oldest_ms = int(time.time() * 1000) - self.settings.history_max_age_seconds * 1000
        history = self._history
        while history and (
            len(history) > self.settings.history_max_events or event_key(history[0].event_id)[0] < oldest_ms
        ):
            self._trimmed = max(self._trimmed, event_key(history.popleft().event_id))

    async def claim(self, scope: str, fingerprint: str) -> Claim:
        now = time.monotonic()
        held = self._claims.get(scope)
        if held is not None and held[0] > now:
            _, held_fingerprint, doc, _ = held
            if held_fingerprint != fingerprint:
                return Claim("mismatch")
            return Claim("done", doc) if doc is not None else Claim("in_flight")
        token = secrets.token_hex(8)
        self._claims[scope] = (now + PENDING_TTL_SECONDS, fingerprint, None, token)
        return Claim("new", token=token)

    async def release(self, scope: str, token: str) -> None:
        held = self._claims.get(scope)
        if held is not None and held[2] is None and held[3] == token:
            del self._claims[scope]

    async def record(
        self,
        type: EventType,
        doc: Document,
        *,
        expect_version: str | None,
        idempotency: tuple[str, str, str] | None = None,
    ) -> Event:
        flash_id = flash_id_of(doc)
        if idempotency is not None:
            held = self._claims.get(idempotency[0])
            if held is None or held[2] is not None or held[3] != idempotency[2] or held[0] <= time.monotonic():
                raise ClaimLost(idempotency[0])
        current = self._flashes.get(flash_id)
        if (current is None) != (expect_version is None) or (current and current["version"] != expect_version):
            raise VersionConflict(flash_id)
        event = Event(self._next_event_id(), type, doc)
        self._history.append(event)
        self._trim()
        self._flashes[flash_id] = doc
        self._event_ids[(flash_id, doc["version"])] = event.event_id
        while len(self._flashes) > self.settings.recent_max_flashes:
            old_id, old = self._flashes.popitem(last=False)
            for version in range(1, int(old["version"]) + 1):
                self._event_ids.pop((old_id, str(version)), None)
        if idempotency is not None:
            scope, fingerprint, token = idempotency
            self._claims[scope] = (time.monotonic() + self.settings.idempotency_ttl_seconds, fingerprint, doc, token)
        if self.run_fanout:
            from ticker_service.broker.fanout import fan_out

            task = asyncio.get_running_loop().create_task(fan_out(self, flash_id, doc["version"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return event

    async def get_flash(self, flash_id: str) -> Document | None:
        return self._flashes.get(flash_id)

    async def recent(self, scan: int) -> tuple[list[Document], str]:
        docs: list[Document] = []
        for doc in reversed(self._flashes.values()):
            if doc["pubStatus"] != "canceled":
                docs.append(doc)
                if len(docs) >= scan:
                    break
        return docs, make_event_id(self.epoch, f"{self._last[0]}-{self._last[1]}")

    async def events_after(self, event_id: str, limit: int) -> list[Event]:
        after = event_key(event_id)
        if split_event_id(event_id)[0] != self.epoch or after < self._trimmed:
            raise HistoryGap(event_id)
        out: list[Event] = []
        for event in reversed(self._history):
            if event_key(event.event_id) <= after:
                break
            out.append(event)
        out.reverse()
        return out[:limit]

    async def event_for(self, flash_id: str, version: str) -> Event | None:
        event_id = self._event_ids.get((flash_id, version))
        if event_id is None:
            return None
        for event in reversed(self._history):
            if event.event_id == event_id:
                return event
        return None

    async def publish(self, event: Event) -> int:
        target = event_key(event.event_id)
        if target <= self._published:
            return 0
        due = [e for e in self._history if self._published < event_key(e.event_id) <= target]
        self._published = target
        for pending in due:
            for handler in self._handlers:
                handler(pending)
        return len(due)

    def subscribe(self, handler: LiveHandler) -> None:
        self._handlers.append(handler)

    def on_history_lost(self, callback: Callable[[], None]) -> None:
        """The memory history is lost only with the process: nothing to report."""
