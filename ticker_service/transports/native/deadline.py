"""The request-head deadline (against slowloris) of every new connection, on one timer for them all.

A timer per connection (``loop.call_later`` when it is made, ``cancel`` when its head arrives) is a timer handle
built, put into libuv's heap and taken out again for each of the thousands of handshakes a second of a reconnect
storm, and each ``call_later`` first looks the running loop up (a ``getpid`` system call on Python 3.11). Every
connection gets the same time, so the order they arrive in is the order their deadlines fall in: a dict (ordered,
O(1) removal) holds them, and one timer, set for the earliest, ends those that are late and is set again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

_MIN_DELAY = 0.001  # the loop's clock ticks in milliseconds: a timer set for less would wake it for nothing


class Late(Protocol):
    """A connection with a deadline."""

    def too_slow(self) -> None:
        """The deadline passed before the connection was done with it."""


class Deadlines:
    """Connections each given ``timeout`` seconds from :meth:`add` until :meth:`discard`, else ``too_slow()``."""

    __slots__ = ("_due", "_timer", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._due: dict[Late, float] = {}  # in the order they were added, which is the order they fall due
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, connection: Late) -> None:
        """Start ``connection``'s time (it is not waiting already: its place, and so the order, stays right)."""
        self._due[connection] = time.monotonic() + self.timeout
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.timeout, self._expire)

    def discard(self, connection: Late) -> None:
        """``connection`` is done in time, or gone: forget it (the timer just finds fewer when it fires)."""
        self._due.pop(connection, None)

    def _expire(self) -> None:
        self._timer = None
        now = time.monotonic()
        late = []
        for connection, due in self._due.items():
            if due > now:
                break
            late.append(connection)
        for connection in late:
            del self._due[connection]
        for connection in late:
            connection.too_slow()
        earliest = next(iter(self._due.values()), None)  # connections made by the calls above included
        if earliest is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(max(_MIN_DELAY, earliest - now), self._expire)
