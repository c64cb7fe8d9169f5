"""Errors as RFC 9457 problem documents (``application/problem+json``), for the ASGI app and the native
protocols alike. The exception hierarchy is in :mod:`ticker_service.errors`.
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .errors import TickerError

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Invalid flash",
    426: "Upgrade required",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
    505: "HTTP version not supported",
}


class Problem(TickerError):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"Problem(status={self.status}, detail={self.detail!r})"


def problem_body(
    status: int, detail: str, *, instance: str | None = None, errors: Sequence[dict[str, str]] | None = None
) -> bytes:
    """The JSON problem document (the ASGI responses here and the native protocols' answers share it)."""
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = list(errors)
    return orjson.dumps(body)


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    all_headers = {"Cache-Control": "no-store"}
    all_headers.update(headers or {})
    body = problem_body(status, detail, instance=instance, errors=errors)
    return Response(body, status_code=status, media_type="application/problem+json", headers=all_headers)


def problem_http(
    status: int,
    detail: str,
    *,
    errors: Sequence[dict[str, str]] = (),
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> bytes:
    """A complete HTTP/1.1 problem response (RFC 9457) that ends the connection, for protocols below ASGI."""
    title = TITLES.get(status, "Error")
    body = problem_body(status, detail, errors=errors)
    head = [
        b"HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\ncache-control: no-store\r\n"
        b"x-content-type-options: nosniff\r\ncontent-length: %d\r\ndate: %s\r\nconnection: close\r\n"
        % (status, title.encode(), len(body), email.utils.formatdate(usegmt=True).encode())
    ]
    for name, value in headers:
        head += [name, b": ", value, b"\r\n"]
    return b"".join([*head, b"\r\n", body])


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.detail, instance=request.url.path, errors=exc.errors, headers=exc.headers)


async def handle_unavailable(request: Request, exc: Exception) -> Response:
    return problem_response(
        503,
        "The flash store (Redis) is unreachable; nothing was written. Retry shortly.",
        instance=request.url.path,
        headers={"Retry-After": "2"},
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", None) or TITLES.get(status, "Error")
    return problem_response(status, str(detail), instance=request.url.path, headers=getattr(exc, "headers", None))
