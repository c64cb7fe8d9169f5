"""The cyclic garbage collector of a hub process, set for holding tens of thousands of long-lived connections.

Every accepted connection allocates a few dozen tracked objects (protocols, the reader, uvloop's transport) that
live as long as the reader does. With CPython's default thresholds (700, 10, 10) the young generations are
collected every few dozen handshakes and the whole heap again each time it has grown by a quarter: at 10,000
readers that was a third to a half of the Python time of an accept (``docs/benchmarks.md``, "Accept").
:func:`settle` freezes what start-up built (modules, the app: never garbage) out of every later collection and
collects the young generation after 10,000 allocations instead of 700. Cycles are still found, in larger batches.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation (CPython's default: 700)
OLDER_THRESHOLDS = (20, 20)  # collections of one generation between collections of the next (default: 10, 10)

_settled = False


def settle() -> None:
    """Once per process, at the end of start-up: collect, freeze the survivors, and collect less often."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
