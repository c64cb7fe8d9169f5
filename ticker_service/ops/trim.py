"""Give the memory the hub freed back to the operating system now and then.

Readers come and go, and each leaves freed blocks scattered through glibc's heap. glibc returns memory to the
system only from the top of the heap, so a long-running hub's RSS creeps up although its live memory does not
(measured in the soak test: tracemalloc flat, RSS up tens of MiB, all of it given back by ``malloc_trim``).
``malloc_trim(0)`` releases the free pages anywhere in the heap; it costs a few milliseconds, once a minute.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

logger = logging.getLogger("ticker.memory")


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim  # glibc only; musl and macOS lack it
    except (OSError, AttributeError):
        return None
    return trim


_malloc_trim = _find_malloc_trim()


def trim() -> bool:
    """Release free heap pages to the system; ``False`` where the C library cannot (not glibc)."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


class Trimmer:
    """Calls :func:`trim` every ``interval`` seconds on the running loop (one timer, no task)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.interval > 0 and _malloc_trim is not None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._run)

    def _run(self) -> None:
        trim()
        self.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
