"""The WebSocket close codes the service sends, what each means and what a client does next: one table for both
transports (``native/websocket.py``, ``asgi/websocket.py``), which the clients mirror.

Clients branch on a code's *range*, not on each code, so that a code added later is handled by existing clients
(as centrifuge does with its disconnect codes):

========== ============================================================================================
1000–2999  RFC 6455 codes. Terminal: 1003, 1007, 1008, 1009 (the request or a message was wrong, and
           repeating it cannot help). Every other one (1001, 1002, 1006, 1011, 1012, 1013, …): reconnect.
3000–3999  Registered for libraries and frameworks; the service sends none. Reconnect.
4000–4399  Reconnect with backoff and the same subscription, resuming with ``last_event_id``; the reason ends
           with a hint, ``retry=<ms>``, that the wait should not undercut.
4400–4499  Reconnect only with fresh credentials (like HTTP 401): a client that can get a new reader token
           reconnects with it; one that cannot stops.
4500–4999  Terminal: do not reconnect with the same request.
========== ============================================================================================

Reasons of reconnect codes end with ``; retry=<ms>``, a reconnect delay jittered per reader (clients add their
own jitter too); terminal ones carry what was wrong instead.
"""

from __future__ import annotations

import enum

from ..wire import retry_ms

__all__ = ["Close", "Rule", "closing", "rule"]


class Rule(enum.Enum):
    """What a client does after a close code."""

    RECONNECT = "reconnect"  # with backoff (at least the retry= hint), resuming by event id
    REFRESH = "refresh"  # reconnect only with a fresh reader token; stop if none can be had
    TERMINAL = "terminal"  # do not reconnect with the same request


class Close(enum.IntEnum):
    """Every close code the service sends."""

    PROTOCOL_ERROR = 1002  # a malformed frame, a stray continuation, a compressed frame (a proxy may be to blame)
    INVALID_DATA = 1007  # a text message or close reason that is not UTF-8
    POLICY_VIOLATION = 1008  # a bad filter or subscribe message
    MESSAGE_TOO_BIG = 1009  # a message over TICKER_WS_MAX_MESSAGE_BYTES
    INTERNAL_ERROR = 1011  # the history could not be read, or no pong came back
    SERVICE_RESTART = 1012  # the hub is stopping: reconnect (to another hub), resuming by event id
    SLOW = 4008  # the reader fell too far behind: reconnect, resuming by event id
    TOKEN_EXPIRED = 4401  # the reader token expired: reconnect with a fresh one

    @property
    def rule(self) -> Rule:
        return rule(self)


RECONNECT = range(4000, 4400)
REFRESH = range(4400, 4500)
TERMINAL = range(4500, 5000)
TERMINAL_RFC = frozenset({1003, 1007, 1008, 1009})


def rule(code: int) -> Rule:
    """What a client does after ``code``, from its range (the same rule the JS and Python clients apply)."""
    if code in TERMINAL_RFC or code in TERMINAL:
        return Rule.TERMINAL
    if code in REFRESH:
        return Rule.REFRESH
    return Rule.RECONNECT


# A hub's reason for closing a reader (``Reader.close``) → the code and the reason text the reader is sent.
REASONS: dict[str, tuple[Close, str]] = {
    "slow": (Close.SLOW, "reader too slow; resume with last_event_id"),
    "shutdown": (Close.SERVICE_RESTART, "service restart; resume with last_event_id"),
    "history": (Close.INTERNAL_ERROR, "history unavailable"),
    "keepalive": (Close.INTERNAL_ERROR, "keepalive ping timeout"),
    "expired": (Close.TOKEN_EXPIRED, "reader token expired; reconnect with a fresh one"),
}


def closing(reason: str) -> tuple[Close, str]:
    """The close code and reason for a hub's ``reason``; any other reason (a bad message) is a policy violation.

    A code that is not terminal gets the reconnect hint, ``; retry=<ms>``.
    """
    code, text = REASONS.get(reason, (Close.POLICY_VIOLATION, reason[:100]))
    if code.rule is not Rule.TERMINAL:
        text = f"{text}; retry={retry_ms()}"
    return code, text
