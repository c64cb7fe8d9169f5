"""Connection limits of one hub process: open connections in all, per client address, and new ones per second.

Checked when the TCP connection is made, before a byte of the request is read, so a flood costs one accept and
one short refusal per connection. The address is the socket's peer: behind a proxy or load balancer every client
shares the proxy's address, so set the per-address limit there (docs/security.md).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable


class ConnectionGuard:
    def __init__(self, *, max_total: int, max_per_ip: int, per_second: int, burst: int | None = None) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.per_second = per_second
        # A token bucket: ``burst`` connections at once (readers arriving together when news breaks), then
        # ``per_second`` for as long as the rush lasts (a reconnect storm is shaped, leaving CPU for fan-out).
        self.burst = float(burst if burst is not None else per_second)
        self.total = 0
        self.per_ip: dict[str, int] = {}
        self._tokens = self.burst
        self._refilled = time.monotonic()

    def admit(self, ip: str) -> tuple[int, str] | None:
        """Count a new connection from ``ip``, or say why not: ``(status, detail)`` (503 or 429)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self._tokens < 1:
            return 503, "Too many new connections this second; retry shortly."
        if self.total >= self.max_total:
            return 503, "This hub is at its connection limit; retry shortly or use another hub."
        if self.per_ip.get(ip, 0) >= self.max_per_ip:
            return 429, "Too many connections from this address."
        self._tokens -= 1
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        return None

    def releaser(self, ip: str | None) -> Callable[[], None] | None:
        """What gives ``ip``'s counted connection back, for the protocol that ends up holding the connection."""
        return None if ip is None else functools.partial(self.release, ip)

    def release(self, ip: str) -> None:
        self.total -= 1
        left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)
