"""``memory.trim`` gives freed heap memory back: the soak test's RSS creep was glibc keeping freed pages."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os
from ticker_service.ops import trim as memory

def rss():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

blocks = [bytes(4000) + bytes([i % 251]) for i in range(50_000)]  # ~200 MB of malloc'd (not pymalloc) blocks
pin = bytes(4000) + b"pin"  # allocated last, near the top of the heap: glibc cannot shrink the heap past it
del blocks
before = rss()
trimmed = memory.trim()
after = rss()
print(trimmed, before, after)
"""


def test_trim_returns_freed_heap_pages_to_the_system() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=True)
    trimmed, before, after = done.stdout.split()
    assert trimmed == "True"  # Debian's C library is glibc
    released = int(before) - int(after)
    assert released > 100 * 2**20, f"trim released only {released / 2**20:.1f} MiB of {int(before) / 2**20:.1f}"
