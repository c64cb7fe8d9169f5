"""Reconnect delays: exponential backoff with full jitter, floored by the server's hint when it gives one; and
what a WebSocket close code asks for, by its range."""

from __future__ import annotations

import random
import re
from typing import Literal

# The hub's close codes by range (its table: ``ticker_service/transports/close.py``; the README's "Close codes").
TERMINAL_CODES = frozenset({1003, 1007, 1008, 1009})  # RFC 6455: the request or a message was wrong
REFRESH_CODES = range(4400, 4500)  # reconnect only with a fresh reader token (4401: it expired)
TERMINAL_RANGE = range(4500, 5000)  # the hub's own terminal codes
# Anything else (1001, 1006, 1011, 1012, 4000–4399 such as 4008 "too slow", ...): reconnect with backoff.

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


def close_rule(code: int) -> Literal["reconnect", "refresh", "terminal"]:
    """What a WebSocket close code asks of the client: reconnect (with backoff, resuming), reconnect only with a
    fresh token, or stop (the same request would be refused again)."""
    if code in TERMINAL_CODES or code in TERMINAL_RANGE:
        return "terminal"
    if code in REFRESH_CODES:
        return "refresh"
    return "reconnect"
