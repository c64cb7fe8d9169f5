"""Events: a flash, its correction, hold or withdrawal at a global position in the history.

Event ids are ``<epoch>-<ms>-<seq>``: the history's epoch, then the position in it. An event is encoded once per
transport: the WebSocket message (also the pub/sub payload) and the SSE event.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Literal

import orjson

from .flashes import Document

EventType = Literal["flash", "update", "withdraw", "reset", "hold"]
SSE_TYPES = frozenset({"flash", "update", "withdraw", "reset", "hold"})
_EVENT_ID = re.compile(r"^[a-z0-9]{1,16}-\d{1,20}-\d{1,20}$")


def new_epoch() -> str:
    return secrets.token_hex(4)


def is_event_id(value: str) -> bool:
    return bool(_EVENT_ID.match(value))


def make_event_id(epoch: str, position: str) -> str:
    """``<epoch>-<ms>-<seq>``: the history's epoch, then the position in it (a Redis stream id)."""
    return f"{epoch}-{position}"


def split_event_id(event_id: str) -> tuple[str, str]:
    """``(epoch, position)`` of an event id."""
    epoch, _, position = event_id.partition("-")
    return epoch, position


def event_key(event_id: str) -> tuple[int, int]:
    """Sort key of an event id within its epoch: ids of one history are globally ordered."""
    _, ms, seq = event_id.rsplit("-", 2)
    return int(ms), int(seq)


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the history: a flash, its correction or its withdrawal, at a global position."""

    event_id: str
    type: EventType
    flash: Document
    # Set only on what the hub makes of an event for a reader with a language preference (stories.py): the uri of
    # the version of the story the reader had, which ``flash`` (now the best version) replaces. Never in the history.
    replaces: str | None = None

    def to_message(self) -> bytes:
        """The WebSocket message (and pub/sub payload): ``{"type", "event_id", "flash"}`` (and ``"replaces"``).

        A ``reset`` carries ``{"type": "reset", "event_id", "flashes": [...]}`` instead: the history could not fill
        the reader's gap, so here is the current state, and ``event_id`` to resume from.
        """
        if self.type == "reset":
            return orjson.dumps({"type": "reset", "event_id": self.event_id, "flashes": self.flash["flashes"]})
        if self.replaces is not None:
            return orjson.dumps(
                {"type": self.type, "event_id": self.event_id, "flash": self.flash, "replaces": self.replaces}
            )
        return orjson.dumps({"type": self.type, "event_id": self.event_id, "flash": self.flash})

    def to_sse(self) -> bytes:
        """``id:``, ``event:`` and ``data:``: the flash, or ``{"flash", "replaces"}`` for a replacing ``update``."""
        # Event ids and types are generated here, never taken from input; checked anyway, because a CR, LF or NUL
        # in either would inject SSE fields (CWE-93). The data is JSON, whose strings escape every control char.
        if not is_event_id(self.event_id) or self.type not in SSE_TYPES:
            raise ValueError(f"not an event id and type for SSE: {self.event_id!r} {self.type!r}")
        return b"id: %s\nevent: %s\ndata: %s\n\n" % (
            self.event_id.encode(),
            self.type.encode(),
            orjson.dumps(self.flash if self.replaces is None else {"flash": self.flash, "replaces": self.replaces}),
        )

    @classmethod
    def from_message(cls, raw: bytes | str) -> Event:
        data = orjson.loads(raw)
        return cls(event_id=data["event_id"], type=data["type"], flash=data["flash"])
