"""``POST /v1/reader-session``: turn a reader's JWT into an HttpOnly cookie, so a page's EventSource (which cannot
set headers) sends it, and scripts on the page cannot read it. ``DELETE`` removes it."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..problems import Problem
from ..security.readers import COOKIE, ReaderAuth, ReaderTokenError, bearer
from .http import json_response


async def open_session(request: Request) -> Response:
    auth: ReaderAuth = request.app.state.security.readers
    token = bearer(request.headers.get("authorization"))
    if token is None:
        raise Problem(401, "Send the reader token as Authorization: Bearer <jwt>.")
    if not auth.private:
        raise Problem(404, "This service has no private topics; readers need no token.")
    try:
        grant = auth.verify(token)
    except ReaderTokenError as exc:
        raise Problem(401, str(exc), errors=[{"field": "Authorization", "message": str(exc)}]) from None
    response = json_response({"topics": sorted(grant.topics & auth.private), "expires": grant.expires})
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(0, int((grant.expires or time.time()) - time.time())),
        path="/v1/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def close_session(request: Request) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/v1/", httponly=True, samesite="strict")
    return response


def routes() -> list[Route]:
    return [
        Route("/v1/reader-session", open_session, methods=["POST"]),
        Route("/v1/reader-session", close_session, methods=["DELETE"]),
    ]
