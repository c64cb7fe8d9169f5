"""Which browser origins may open a reader stream or call the API from a page (``TICKER_ALLOWED_ORIGINS``).

Browsers send ``Origin`` on every WebSocket handshake and a page cannot suppress or forge it, so checking it stops
cross-site WebSocket hijacking: a page on another site opening ``/v1/stream`` with the reader's cookies. Same-origin
policy does not apply to WebSockets and Starlette's CORS middleware does not see them, so the check is made here,
before the handshake completes. A request with no ``Origin`` at all comes from a non-browser client (the Python
client, ``websockets``, curl): such a client can send any header it likes, so refusing it would protect nothing,
and it is allowed.

Matching is exact (scheme, host and port, lower-cased); ``null`` and anything not listed are refused. With no list,
the allowed origin is the service's own: ``TICKER_PUBLIC_URL``'s origin, or the request's ``Host`` under http or
https.
"""

from __future__ import annotations

from urllib.parse import urlsplit

CORS_METHODS = "GET, POST, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower-cased, as browsers write it in ``Origin``."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


class OriginPolicy:
    """The allowlist, and the CORS headers for a page on an allowed foreign origin."""

    def __init__(self, allowed: tuple[str, ...], public_url: str | None) -> None:
        self.allowed = frozenset(origin_of(o) for o in allowed)
        self.own = origin_of(public_url) if public_url else None

    def allows(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser: see the module docstring
        origin = origin.strip().lower()
        if self.allowed:
            return origin in self.allowed
        if self.own is not None:
            return origin == self.own
        return host is not None and origin in (f"http://{host.lower()}", f"https://{host.lower()}")

    def cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """Headers that let a listed foreign origin read a response, with credentials (never ``*``)."""
        if origin is None or origin.strip().lower() not in self.allowed:
            return []
        return [
            (b"access-control-allow-origin", origin.strip().encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]
