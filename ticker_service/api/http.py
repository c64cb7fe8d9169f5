"""What every endpoint shares: JSON responses with the API's headers, bounded JSON bodies, and validation
errors as problem documents that name each field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..flashes import (
    check_taxonomy,
)
from ..problems import Problem
from ..settings import Settings

API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
M = TypeVar("M", bound=BaseModel)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, {**API_HEADERS, **(headers or {})}, media_type="application/json")


class DirectEndpoint:
    """``endpoint`` as the route's ASGI app, without the exception wrapper Starlette puts around each function
    endpoint: ``ExceptionMiddleware`` around the router answers the same exceptions with the same handlers, so the
    wrapper only repeats that work on every request. For the hot path (``POST /v1/flashes``)."""

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.endpoint(Request(scope, receive, send))
        await response(scope, receive, send)


async def read_json(request: Request, limit: int, *, beacon: bool = False) -> Any:
    """The request body as JSON, refusing wrong types (415) and bodies over ``limit`` bytes (413) early.

    ``beacon``: a ``text/plain`` body is JSON too (``navigator.sendBeacon`` cannot set another type)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if beacon and not (is_json or content_type == "text/plain"):
        raise Problem(415, "Send the body as JSON (application/json, or text/plain from navigator.sendBeacon).")
    if not beacon and not is_json:
        raise Problem(415, "Send the flash as JSON with Content-Type: application/json.")
    too_large = Problem(413, f"The body is larger than the limit of {limit} bytes.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"The body is not valid JSON: {exc}") from None


def field_errors(pairs: Iterable[tuple[str, str]]) -> Problem:
    """422 naming each invalid field: ``pairs`` are ``(field, message)``."""
    errors = [{"field": field, "message": message} for field, message in pairs]
    return Problem(422, f"{len(errors)} field(s) are invalid.", errors=errors)


def pydantic_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, message)`` of each error pydantic found, the field as a dotted path (``body`` for the whole)."""
    return [
        (".".join(str(part) for part in err["loc"]) or "body", err["msg"].removeprefix("Value error, "))
        for err in exc.errors()
    ]


def json_object(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Problem(422, "The body must be a JSON object.", errors=[{"field": "body", "message": "not an object"}])
    return raw


def validate(model: type[M], raw: Any, settings: Settings) -> M:
    """``raw`` as ``model``, its taxonomy checked too; one 422 names every invalid field."""
    try:
        value = model.model_validate(json_object(raw))
    except ValidationError as exc:
        errors = pydantic_errors(exc)
        named = {field for field, _ in errors}
        raise field_errors(errors + [(f, m) for f, m in check_taxonomy(raw, settings) if f not in named]) from None
    taxonomy = check_taxonomy(value.model_dump(), settings)
    if taxonomy:
        raise field_errors(taxonomy)
    return value
