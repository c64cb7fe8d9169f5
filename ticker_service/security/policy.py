"""The security parts a hub process shares between the ASGI app and its native protocols, and response headers.

``Security`` travels in the lifespan state (``transports.native.NativeState``) to the native WebSocket/SSE
protocols, which run below ASGI and so below any middleware. ``SecurityHeaders`` is the ASGI middleware for
everything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from .guard import ConnectionGuard
from .origins import CORS_HEADERS, CORS_METHODS, OriginPolicy
from .readers import ReaderAuth

# Pages: scripts, styles and connections only from here; no framing, no plugins, no <base> tricks.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class Security:
    origins: OriginPolicy
    guard: ConnectionGuard
    readers: ReaderAuth

    @classmethod
    def from_settings(cls, settings: Settings) -> Security:
        return cls(
            OriginPolicy(settings.allowed_origins, settings.public_url),
            ConnectionGuard(
                max_total=settings.max_connections,
                max_per_ip=settings.max_connections_per_ip,
                per_second=settings.new_connections_per_second,
                burst=settings.new_connections_burst,
            ),
            ReaderAuth(settings),
        )


class SecurityHeaders:
    """``nosniff`` on every response, ``no-store`` on the API, a strict CSP on HTML pages (unless one is set), and
    no credentials beside a wildcard CORS origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/v1/") or scope["path"] in ("/openapi.json", "/healthz", "/readyz")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                secure(message, api)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secure(message: Message, api: bool) -> None:
    """Add the headers :class:`SecurityHeaders` promises to a ``http.response.start`` message.

    The API's JSON responses already carry ``nosniff`` and ``no-store`` (``api/http.py``): when one scan of the raw
    headers shows nothing would change, the ``MutableHeaders`` view and its lookups are skipped."""
    seen: dict[bytes, list[bytes]] = {}
    for name, value in message.get("headers", ()):
        seen.setdefault(name.lower(), []).append(value)
    if (
        b"x-content-type-options" in seen
        and b"access-control-allow-origin" not in seen
        and not any(value.startswith(b"text/html") for value in seen.get(b"content-type", ()))
        and (not api or seen.get(b"cache-control") == [b"no-store"])
    ):
        return
    headers = MutableHeaders(scope=message)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if headers.get("access-control-allow-origin") == "*":
        # Public data for any page, never with credentials (CORSMiddleware adds them to every answer).
        del headers["access-control-allow-credentials"]
    if api:
        headers["Cache-Control"] = "no-store"
    if headers.get("content-type", "").startswith("text/html"):
        headers.setdefault("Content-Security-Policy", PAGE_CSP)
        headers.setdefault("Referrer-Policy", "no-referrer")


def middleware(settings: Settings) -> list[Middleware]:
    """Security headers everywhere; CORS only for the listed origins, echoed one by one (credentials, no ``*``)."""
    stack = [Middleware(SecurityHeaders)]
    if settings.allowed_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=[m.strip() for m in CORS_METHODS.split(",")],
                allow_headers=[h.strip() for h in CORS_HEADERS.split(",")],
                allow_credentials=True,
                expose_headers=["Location", "Retry-After"],
                max_age=600,
            )
        )
    return stack
