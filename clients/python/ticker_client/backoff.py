"""Reconnect delays: exponential backoff with full jitter, floored by the server's hint when it gives one."""

from __future__ import annotations

import random
import re

_HINT = re.compile(r"retry=(\d{1,7})")


def delay(attempt: int, *, base: float = 0.25, cap: float = 20.0, hint: float | None = None) -> float:
    """Seconds to wait before reconnect ``attempt`` (1, 2, ...): uniform in [0, min(cap, base·2^attempt)].

    With a server hint (SSE ``retry:``, ``retry=<ms>`` in a WebSocket close reason) the wait is at least that.
    """
    wait = random.uniform(0, min(cap, base * 2**attempt))
    return max(wait, hint) if hint is not None else wait


def hint_from_reason(reason: str) -> float | None:
    match = _HINT.search(reason or "")
    return int(match.group(1)) / 1000 if match else None
