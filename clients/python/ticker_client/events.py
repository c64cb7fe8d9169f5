"""Typed events as the client yields them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal["flash", "update", "withdraw", "reset", "hold"]


@dataclass(frozen=True, slots=True)
class Event:
    """A flash, its correction or withdrawal (``flash`` is the ninjs document), or a ``reset``.

    A ``hold`` means the desk took the flash off the air while it is checked (``pubStatus: withheld``): hide it
    until an ``update`` releases it (or a ``withdraw`` kills it).

    A ``reset`` means the service could not fill the gap since the last event (its history was lost or trimmed):
    ``flashes`` is then the current state to start again from. With a language preference (``lang="ar,en"``), an
    ``update`` may bring a better (or, after a withdrawal, the next best) version of a story: ``replaces`` is then
    the ``uri`` of the version it replaces, which is no longer to be shown.
    """

    type: EventType
    event_id: str
    flash: dict[str, Any] | None = None
    flashes: list[dict[str, Any]] = field(default_factory=list)
    replaces: str | None = None

    @property
    def held(self) -> bool:
        """Whether the flash is on hold: not to be shown until released."""
        return self.flash is not None and self.flash.get("pubStatus") == "withheld"

    @property
    def uri(self) -> str | None:
        return None if self.flash is None else str(self.flash.get("uri"))

    @property
    def headline(self) -> str | None:
        if self.flash is None:
            return None
        headlines = self.flash.get("headlines") or [{}]
        return str(headlines[0].get("value", ""))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            type=data["type"],
            event_id=data["event_id"],
            flash=data.get("flash"),
            flashes=data.get("flashes") or [],
            replaces=data.get("replaces"),
        )
