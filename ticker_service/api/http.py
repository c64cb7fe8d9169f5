"""What every endpoint shares: JSON responses with the API's headers, bounded JSON bodies, and validation
errors as problem documents that name each field.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from ..flashes import (
    check_taxonomy,
)
from ..problems import Problem
from ..settings import Settings

API_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
M = TypeVar("M", bound=BaseModel)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, {**API_HEADERS, **(headers or {})}, media_type="application/json")


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing wrong types (415) and bodies over ``limit`` bytes (413) early."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
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


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        errors.append({"field": field, "message": message})
    return errors


def validate(model: type[M], raw: Any, settings: Settings) -> M:
    if not isinstance(raw, dict):
        raise Problem(422, "The body must be a JSON object.", errors=[{"field": "body", "message": "not an object"}])
    try:
        value = model.model_validate(raw)
    except ValidationError as exc:
        errors = _field_errors(exc)
        named = {e["field"] for e in errors}
        errors += [{"field": f, "message": m} for f, m in check_taxonomy(raw, settings) if f not in named]
        raise Problem(422, f"{len(errors)} field(s) are invalid.", errors=errors) from None
    taxonomy = check_taxonomy(value.model_dump(), settings)
    if taxonomy:
        errors = [{"field": field, "message": message} for field, message in taxonomy]
        raise Problem(422, f"{len(errors)} field(s) are invalid.", errors=errors)
    return value
