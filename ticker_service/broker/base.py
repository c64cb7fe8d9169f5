"""The Broker: history, current state and live fan-out, behind one interface with two implementations.

Contract (both implementations):

* ``record`` is atomic: the event is appended to the history (its id is the global event id), the flash's current
  state is updated, the idempotency result is stored and a fan-out is scheduled — all of it, or none of it.
  It raises :class:`~ticker_service.errors.BrokerUnavailable` when the backend cannot be reached.
* Event ids are ``<epoch>-<position>`` and increase strictly within an epoch, so readers can resume "after id X".
  The epoch changes when the history is lost (e.g. Redis restarted without persistence; a new embedded process).
* History is retained by count (``history_max_events``) and age (``history_max_age_seconds``).
* ``publish(event)`` sends every recorded event up to and including ``event`` that no earlier call has sent, in
  event-id order, each once. Fan-out jobs may run concurrently, out of order or twice (arq is at least once):
  readers still see events in history order. Delivery to hubs is at most once (Redis pub/sub): a hub that is not
  subscribed misses the event, and readers close that gap by resuming from the history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from ..events import Event, EventType
from ..flashes import Document

LiveHandler = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Claim:
    """Outcome of claiming an idempotency key."""

    state: Literal["new", "in_flight", "mismatch", "done"]
    document: Document | None = None  # the first response's flash, when ``done``
    token: str = ""  # when ``new``: proves the claim is still this request's when the result is recorded


class HistoryGap(Exception):
    """The history cannot continue from this event id: another epoch (the history was lost), or trimmed away."""


class ClaimLost(Exception):
    """The idempotency claim expired or went to another request before this one recorded; nothing was written."""


class VersionConflict(Exception):
    """The flash changed between read and write (a concurrent correction); the caller re-reads and retries."""


class Broker(Protocol):
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
    ) -> Event:
        """Append an event for ``doc`` and make ``doc`` the flash's current state.

        ``expect_version`` is ``None`` for a new flash, else the version being replaced (:class:`VersionConflict`
        if it is no longer current). ``idempotency`` is ``(scope, fingerprint, claim token)``: the result is
        remembered under the scope, and nothing is written (:class:`ClaimLost`) unless the claim is still held —
        so a request that timed out and ran late cannot publish a second flash for the same key.
        """
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
