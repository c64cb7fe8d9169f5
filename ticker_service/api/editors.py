"""Editors at the HTTP edge: who is asking (bearer token), how often (rate limits) and for which desk."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request

from ..flashes import (
    flash_id_of,
)
from ..problems import Problem
from ..security.audit import audit
from ..security.ratelimit import RateLimiter
from ..security.tokens import Editor, TokenStore
from ..settings import Settings

WRITE_SCOPES = ("publish", "correct", "withdraw", "approve")


async def authenticate(request: Request, scope: str | None = None, action: str | None = None) -> Editor:
    """The editor behind the request's bearer token (401 without one); 403 if it lacks ``scope``; 429 past the
    token's writes per minute, or past the failed attempts per minute from the client's address. Refusals go to
    the audit log (of each run of 429s, the first), so that a flood cannot push real entries out of it, under
    ``action`` (default: the scope)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    tokens: TokenStore = request.app.state.tokens
    limiter: RateLimiter = request.app.state.rate_limiter
    settings: Settings = request.app.state.settings
    editor, counted = None, None
    if scheme.lower() == "bearer" and token.strip():
        if scope in WRITE_SCOPES:  # the lookup counts the write too, where the store can (Redis: one round trip)
            editor, counted = await tokens.authenticate_write(token.strip(), scope)
        else:
            editor = await tokens.authenticate(token.strip())
    action = action or scope or request.method.lower()
    if editor is None:
        ip = request.client.host if request.client else "-"
        limit = settings.failed_auth_per_minute
        await limit_rate(request, limiter, f"failed:{ip}", limit, action, None, "failed attempts")
        await audit(request, action, 401, None, detail="no token, or an unknown or revoked one")
        raise Problem(
            401,
            "A valid editor token is required: Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": 'Bearer realm="ticker"'},
        )
    if scope is not None and scope not in editor.scopes:
        await audit(request, action, 403, editor.name, detail=f"lacks the {scope!r} scope")
        raise Problem(403, f"The token {editor.name!r} lacks the {scope!r} scope.")
    if scope in WRITE_SCOPES:
        limit = settings.publish_rate_per_minute
        await limit_rate(request, limiter, f"token:{editor.name}", limit, action, editor.name, "writes", counted)
    return editor


async def limit_rate(
    request: Request,
    limiter: RateLimiter,
    key: str,
    limit: int,
    action: str,
    who: str | None,
    what: str,
    counted: tuple[int, float] | None = None,
) -> None:
    """429 with Retry-After once ``key`` is past ``limit`` this minute; the first time, audited. ``counted``: this
    request was already counted (count, seconds left in the window)."""
    count, left = counted if counted is not None else await limiter.hit(key)
    if count <= limit:
        return
    detail = f"over {limit} {what} per minute"
    if count == limit + 1:
        await audit(request, action, 429, who, detail=detail)
    raise Problem(429, f"Too many requests: {detail}.", headers={"Retry-After": str(max(1, math.ceil(left)))})


async def check_desk(request: Request, editor: Editor, action: str, doc_or_values: dict[str, Any]) -> None:
    """403 (audited) if a flash's language or category is outside the editor's desk."""
    language, category = doc_or_values.get("language", ""), doc_or_values.get("category")
    if category is None:  # a stored document: its category is the subject's literal
        category = doc_or_values.get("subjects", [{}])[0].get("literal", "")
    reason = editor.desk.refuses(str(language), str(category))
    if reason is not None:
        flash = flash_id_of(doc_or_values) if "uri" in doc_or_values else None
        await audit(request, action, 403, editor.name, flash=flash, detail=reason)
        raise Problem(403, f"The token {editor.name!r} may not do this: {reason}.")
