"""In-process broker for the embedded mode (and tests): history in memory, fan-out as a task, not an arq job."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..events import Event, EventType, event_key, make_event_id, new_epoch, split_event_id
from ..flashes import Document, flash_id_of
from ..settings import Settings
from .base import Claim, ClaimLost, HistoryGap, LiveHandler, VersionConflict, Withheld

logger = logging.getLogger("ticker.broker")

PENDING_TTL_SECONDS = 10.0


class MemoryBroker:
    """``withheld_path``: where the flashes that wait (embargo, approval) are kept across restarts, so an embargo
    lapses on time after a restart too; ``None`` keeps them in memory only (tests, tools)."""

    records_audit = False  # the audit log is the app's (security/audit.py), not this broker's

    def __init__(self, settings: Settings, *, run_fanout: bool = True, withheld_path: Path | None = None) -> None:
        self.settings = settings
        self.run_fanout = run_fanout
        self.withheld_path = withheld_path
        self._withheld: dict[str, Withheld] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.epoch = new_epoch()  # the history lives and dies with this process
        self._history: deque[Event] = deque()
        self._trimmed = (0, 0)  # the largest position trimmed from the history
        self._flashes: OrderedDict[str, Document] = OrderedDict()  # by first creation, oldest first
        self._event_ids: dict[tuple[str, str], str] = {}  # (flash id, version) -> event id
        self._claims: dict[str, tuple[float, str, Document | None, str]] = {}  # expiry, fingerprint, doc, token
        self._handlers: list[LiveHandler] = []
        self._last = (0, 0)
        self._published = (0, 0)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Restore the waiting flashes and arm their embargo timers (one that lapsed while down goes out now)."""
        if self.withheld_path is None:
            return
        try:
            saved = json.loads(self.withheld_path.read_text())
        except FileNotFoundError:
            return
        for flash_id, item in saved.items():
            self._flashes[flash_id] = item["doc"]
            self._withheld[flash_id] = Withheld.from_json(item["withheld"])
            self._arm(flash_id)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()

    # -- the waiting flashes: embargo timers, and the file that keeps them ------------------------------------
    def _save(self) -> None:
        if self.withheld_path is None:
            return
        data = {i: {"doc": self._flashes[i], "withheld": w.to_json()} for i, w in self._withheld.items()}
        self.withheld_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.withheld_path.parent, prefix=".withheld.")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.withheld_path)

    def _arm(self, flash_id: str) -> None:
        """(Re)start the embargo timer of ``flash_id``, if it is scheduled."""
        old = self._timers.pop(flash_id, None)
        if old is not None:
            old.cancel()
        withheld = self._withheld.get(flash_id)
        if withheld is None or withheld.status != "scheduled":
            return
        version = self._flashes[flash_id]["version"]
        loop = asyncio.get_running_loop()
        delay = max(0.0, withheld.due_ms / 1000 - time.time())
        self._timers[flash_id] = loop.call_later(delay, self._due, flash_id, version)

    def _due(self, flash_id: str, version: str) -> None:
        from ticker_service.broker.release import release_due

        self._timers.pop(flash_id, None)
        task = asyncio.get_running_loop().create_task(release_due(self, flash_id, version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _check_version(self, flash_id: str, expect_version: str | None) -> None:
        current = self._flashes.get(flash_id)
        if (current is None) != (expect_version is None) or (current and current["version"] != expect_version):
            raise VersionConflict(flash_id)

    def _check_claim(self, idempotency: tuple[str, str, str] | None) -> None:
        if idempotency is not None:
            held = self._claims.get(idempotency[0])
            if held is None or held[2] is not None or held[3] != idempotency[2] or held[0] <= time.monotonic():
                raise ClaimLost(idempotency[0])

    def _answer_claim(self, idempotency: tuple[str, str, str] | None, doc: Document) -> None:
        if idempotency is not None:
            scope, fingerprint, token = idempotency
            self._claims[scope] = (time.monotonic() + self.settings.idempotency_ttl_seconds, fingerprint, doc, token)

    async def stage(
        self,
        doc: Document,
        *,
        expect_version: str | None,
        withheld: Withheld | None,
        idempotency: tuple[str, str, str] | None = None,
    ) -> None:
        flash_id = flash_id_of(doc)
        self._check_claim(idempotency)
        self._check_version(flash_id, expect_version)
        self._flashes[flash_id] = doc
        if withheld is None:
            self._withheld.pop(flash_id, None)
        else:
            self._withheld[flash_id] = withheld
        self._answer_claim(idempotency, doc)
        self._save()
        self._arm(flash_id)

    async def discard(self, flash_id: str, expect_version: str) -> None:
        self._check_version(flash_id, expect_version)
        del self._flashes[flash_id]
        self._withheld.pop(flash_id, None)
        self._save()
        self._arm(flash_id)

    async def withheld(self, flash_id: str) -> Withheld | None:
        return self._withheld.get(flash_id)

    async def count_withheld(self) -> int:
        return len(self._withheld)

    async def list_withheld(self, status: str, limit: int) -> list[tuple[Document, Withheld]]:
        found = [(self._flashes[i], w) for i, w in self._withheld.items() if w.status == status]
        found.sort(key=lambda item: (item[1].due_ms, item[0]["firstCreated"]))
        return found[:limit]

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
        audit: bytes = b"",
    ) -> Event:
        flash_id = flash_id_of(doc)
        self._check_claim(idempotency)
        self._check_version(flash_id, expect_version)
        event = Event(self._next_event_id(), type, doc)
        self._history.append(event)
        self._trim()
        if self._withheld.pop(flash_id, None) is not None:
            self._flashes.pop(flash_id)  # released: it counts as new from now on (the list's order)
            self._save()
            self._arm(flash_id)
        self._flashes[flash_id] = doc
        self._event_ids[(flash_id, doc["version"])] = event.event_id
        while len(self._flashes) > self.settings.recent_max_flashes:
            old_id, old = self._flashes.popitem(last=False)
            if self._withheld.pop(old_id, None) is not None:
                self._save()
                self._arm(old_id)
            for version in range(1, int(old["version"]) + 1):
                self._event_ids.pop((old_id, str(version)), None)
        self._answer_claim(idempotency, doc)
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
        for flash_id, doc in reversed(self._flashes.items()):
            if doc["pubStatus"] == "usable" and flash_id not in self._withheld:
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
