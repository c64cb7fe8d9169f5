"""Errors as RFC 9457 problem documents (``application/problem+json``).

Hierarchy::

    TickerError
    ├── Problem                 an HTTP error with a status and a problem body
    └── BrokerUnavailable       Redis (or the broker) cannot be reached: answered with 503
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

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
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class TickerError(Exception):
    """Root of the service's own exceptions."""


class BrokerUnavailable(TickerError):
    """The history/broker backend did not answer; nothing was written."""


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


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    all_headers = {"Cache-Control": "no-store"}
    all_headers.update(headers or {})
    return Response(orjson.dumps(body), status_code=status, media_type="application/problem+json", headers=all_headers)


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
