"""``GET /v1/audit``: the newest audit entries, for tokens with the ``admin`` scope."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..problems import Problem
from ..security.audit import AuditLog
from .editors import authenticate
from .http import json_response

MAX_ENTRIES = 1000


async def read_audit(request: Request) -> Response:
    await authenticate(request, "admin")
    raw = request.query_params.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ENTRIES:
        raise Problem(
            400,
            f"limit must be an integer from 1 to {MAX_ENTRIES}.",
            errors=[{"field": "limit", "message": "out of range"}],
        )
    log: AuditLog = request.app.state.audit
    return json_response({"entries": await log.recent(int(raw))})


def routes() -> list[Route]:
    return [Route("/v1/audit", read_audit, methods=["GET"])]
