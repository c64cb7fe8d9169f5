"""The Broker: history, current state and live fan-out, behind one interface with two implementations.

Contract (both implementations):

* ``record`` is atomic: the event is appended to the history (its id is the global event id), the flash's current
  state is updated, the idempotency result is stored and a fan-out is scheduled — all of it, or none of it.
  It raises :class:`~ticker_service.errors.BrokerUnavailable` when the backend cannot be reached.
* Event ids are ``<epoch>-<position>`` and increase strictly within an epoch, so readers can resume "after id X".
  The epoch changes when the history is lost (e.g. Redis restarted without persistence; a new embedded process).
* History is retained by count (``history_max_events``) and age (``history_max_age_seconds``).
* ``stage`` makes a document the flash's current state *without* an event: a flash no reader may see yet
  (scheduled behind an embargo, pending a second editor) or a silent change to a held one. It is kept with its
  :class:`Withheld` reason, never in the history, never in ``recent``; ``record`` of a later version ends it.
  A scheduled flash is released at its instant even across restarts (an arq job deferred to it in Redis; a timer
  restored from the data directory in the embedded mode), by :func:`.release.release_due`.
* ``publish(event)`` sends every recorded event up to and including ``event`` that no earlier call has sent, in
  event-id order, each once. Fan-out jobs may run concurrently, out of order or twice (arq is at least once):
  readers still see events in history order. Delivery to hubs is at most once (Redis pub/sub): a hub that is not
  subscribed misses the event, and readers close that gap by resuming from the history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from ..events import Event, EventType
from ..flashes import Document

LiveHandler = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of claiming an idempotency key."""

    state: Literal["new", "in_flight", "mismatch", "done"]
    document: Document | None = None  # the first response's flash, when ``done``
    token: str = ""  # when ``new``: proves the claim is still this request's when the result is recorded


@dataclass(frozen=True, slots=True)
class Withheld:
    """Why a stored flash has gone to no reader yet: an embargo until ``due_ms``, or a second editor's approval."""

    status: Literal["scheduled", "pending"]
    due_ms: int = 0  # scheduled: unix milliseconds of the embargo
    by: str = ""  # who asked for it: the editor token's name
    by_id: str = ""  # and its stable id (a rotated token is the same editor)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Withheld:
        return cls(data["status"], int(data.get("due_ms", 0)), data.get("by", ""), data.get("by_id", ""))


class HistoryGap(Exception):
    """The history cannot continue from this event id: another epoch (the history was lost), or trimmed away."""


class ClaimLost(Exception):
    """The idempotency claim expired or went to another request before this one recorded; nothing was written."""


class VersionConflict(Exception):
    """The flash changed between read and write (a concurrent correction); the caller re-reads and retries."""


class Broker(Protocol):
    records_audit: bool  # record() writes its ``audit`` entry to the audit log (same store, same step)

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self) -> bool:
        """True when the backend is reachable and live events are being received."""
        ...

    # -- ingest side -------------------------------------------------------------------------------------------
    async def claim(self, scope: str, fingerprint: str) -> Claim:
        """Claim an idempotency key (``scope`` = editor + key) for a request body with this fingerprint."""
        ...

    async def release(self, scope: str, token: str) -> None:
        """Give up this request's claim after it failed, so the editor can retry with the same key."""
        ...

    async def record(
        self,
        type: EventType,
        doc: Document,
        *,
        expect_version: str | None,
        idempotency: tuple[str, str, str] | None = None,
        audit: bytes = b"",
    ) -> Event:
        """Append an event for ``doc`` and make ``doc`` the flash's current state.

        ``expect_version`` is ``None`` for a new flash, else the version being replaced (:class:`VersionConflict`
        if it is no longer current). ``idempotency`` is ``(scope, fingerprint, claim token)``: the result is
        remembered under the scope, and nothing is written (:class:`ClaimLost`) unless the claim is still held —
        so a request that timed out and ran late cannot publish a second flash for the same key. ``audit``: an
        audit-log entry (JSON) written with the event, by a broker whose ``records_audit`` is true (it keeps the
        audit log in its own store); others ignore it and the caller writes the entry itself.
        """
        ...

    async def stage(
        self,
        doc: Document,
        *,
        expect_version: str | None,
        withheld: Withheld | None,
        idempotency: tuple[str, str, str] | None = None,
    ) -> None:
        """Make ``doc`` the flash's current state with no event: nothing is published, nothing is fanned out.

        ``withheld`` says why it waits (``None``: a silent change to a held flash). A ``scheduled`` one is released
        at ``due_ms``. Version check and idempotency as in :meth:`record`.
        """
        ...

    async def discard(self, flash_id: str, expect_version: str) -> None:
        """Forget a flash that never went out (a canceled embargo, a rejected approval): no event, no trace."""
        ...

    async def withheld(self, flash_id: str) -> Withheld | None:
        """Why this flash is waiting, or ``None`` if it is not (published, held, withdrawn or unknown)."""
        ...

    async def count_withheld(self) -> int:
        """How many flashes wait (scheduled and pending together)."""
        ...

    async def list_withheld(self, status: str, limit: int) -> list[tuple[Document, Withheld]]:
        """Flashes waiting for this reason, the soonest (scheduled) or oldest (pending) first."""
        ...

    async def get_flash(self, flash_id: str) -> Document | None: ...

    async def recent(self, scan: int) -> tuple[list[Document], str]:
        """Up to ``scan`` current, not withdrawn flashes, newest first, and the last event id at that moment."""
        ...

    async def events_after(self, event_id: str, limit: int) -> list[Event]:
        """Events with an id greater than ``event_id``, oldest first.

        Raises :class:`HistoryGap` when ``event_id`` is from another epoch or older than what is retained.
        """
        ...

    async def event_for(self, flash_id: str, version: str) -> Event | None:
        """The event that recorded this version of a flash (what a fan-out job publishes)."""
        ...

    # -- live side ---------------------------------------------------------------------------------------------
    async def publish(self, event: Event) -> int:
        """Send to every hub, in order, the events up to ``event`` not sent yet; return how many were sent."""
        ...

    def subscribe(self, handler: LiveHandler) -> None:
        """Call ``handler`` for every published event, in this process. Call before ``start``."""
        ...

    def on_history_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when this process finds that the history has a new epoch (it was lost)."""
        ...
