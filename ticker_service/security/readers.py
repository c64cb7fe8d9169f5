"""Readers' JWTs for private topics: which private categories or regions a reader may receive, and until when.

Topics are public unless ``TICKER_PRIVATE_TOPICS`` names them. A reader may present a JWT; it is verified with
the one algorithm and key the configuration fixes (a token's own ``alg`` header never chooses: ``none`` and
HS256-signed-with-the-public-key are refused), and must carry ``exp``, ``aud`` and ``iss``. Its topics claim
lists the private topics granted. A token that fails any check is refused (401), never silently downgraded.

Where a reader's token comes from: WebSocket, the ``Authorization: Bearer`` header or the subprotocol
``ticker.bearer.<jwt>`` offered next to ``ticker`` (what a browser can send); SSE, the header or the HttpOnly
cookie ``ticker_reader``. Never the URL, which proxies and access logs record.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

import jwt
from starlette.requests import Request

from ..filters import Filter
from ..flashes import CANARY_CATEGORY
from ..problems import Problem
from ..settings import Settings
from .tokens import PREFIX as EDITOR_PREFIX

COOKIE = "ticker_reader"
SUBPROTOCOL = "ticker"
BEARER_SUBPROTOCOL = "ticker.bearer."


class ReaderTokenError(ValueError):
    """The reader's token is invalid, expired or unverifiable; the message says which, for the 401 body."""


@dataclass(frozen=True, slots=True)
class Grant:
    """What a reader may see beyond the public topics, and when the permission ends (epoch seconds)."""

    topics: frozenset[str] = frozenset()
    expires: float | None = None


NO_GRANT = Grant()
CANARY_GRANT = Grant(frozenset({CANARY_CATEGORY}))


class ReaderAuth:
    def __init__(self, settings: Settings) -> None:
        self.private = frozenset(settings.private_topics)
        self.key = settings.jwt_key
        self.algorithm = settings.jwt_algorithm
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.claim = settings.jwt_topics_claim
        # The canary's category is private whatever the configuration says; only the canary's own reader, with
        # the secret every hub shares (ops/canary.py sets it), is granted it.
        self.hidden = self.private | {CANARY_CATEGORY}
        self.canary_key: str | None = None

    def verify(self, token: str | None) -> Grant:
        """The grant of ``token`` (no token: only public topics); :class:`ReaderTokenError` if it is bad.

        With no private topics there is nothing to grant, and tokens are not looked at (but the canary's).
        """
        if token is not None and self.canary_key and hmac.compare_digest(token.encode(), self.canary_key.encode()):
            return CANARY_GRANT
        if token is None or not self.private:
            return NO_GRANT
        if not self.key:
            raise ReaderTokenError("this service does not accept reader tokens (TICKER_JWT_KEY is not set)")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "aud", "iss"]},
            )
        except jwt.PyJWTError as exc:
            raise ReaderTokenError(f"reader token refused: {exc}") from None
        topics = claims.get(self.claim, [])
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            raise ReaderTokenError(f"reader token refused: {self.claim!r} must be a list of topic names")
        # No issuer can grant the canary's category: only the canary's own secret does.
        return Grant(frozenset(t.lower() for t in topics) - {CANARY_CATEGORY}, float(claims["exp"]))

    def apply(self, flt: Filter, grant: Grant) -> Filter:
        """``flt`` limited to the public topics and those granted."""
        return flt.with_access(self.hidden, grant.topics & self.hidden)


def request_grant(request: Request) -> Grant:
    """The grant of an API request's reader token (header or cookie); editor tokens (``tkr_``) grant nothing."""
    auth: ReaderAuth = request.app.state.security.readers
    token = bearer(request.headers.get("authorization")) or request.cookies.get(COOKIE)
    if token is not None and token.startswith(EDITOR_PREFIX):
        return NO_GRANT
    try:
        return auth.verify(token)
    except ReaderTokenError as exc:
        raise Problem(401, str(exc), errors=[{"field": "Authorization", "message": str(exc)}]) from None


def bearer(authorization: str | None) -> str | None:
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def from_subprotocols(offered: Iterable[str]) -> str | None:
    """The token a browser sent as a WebSocket subprotocol, ``ticker.bearer.<jwt>``."""
    for item in offered:
        item = item.strip()
        if item.startswith(BEARER_SUBPROTOCOL):
            return item[len(BEARER_SUBPROTOCOL) :] or None
    return None


def from_cookie(cookie_header: str | None) -> str | None:
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None
