"""APNs' provider API: HTTP/2 only, ``POST /3/device/{token}``, an ES256 provider token checked against the .p8
key, and the headers APNs requires; errors as ``{"reason": ...}`` with APNs' status codes."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Fake

REASONS = {
    400: "BadDeviceToken",
    410: "Unregistered",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


def reason(status: int, why: str) -> Response:
    body: dict[str, object] = {"reason": why}
    if status == 410:
        body["timestamp"] = int(time.time() * 1000)
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class FakeApns(Fake):
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    key_id: str = "ABC123DEFG"
    team_id: str = "TEAM123456"
    topic: str = "com.example.ticker"

    def p8(self) -> str:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return pem.decode()

    def _check_token(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return "MissingProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != "ES256" or header.get("kid") != self.key_id:
                return "InvalidProviderToken"
            claims = jwt.decode(token, self.key.public_key(), algorithms=["ES256"], options={"require": ["iat", "iss"]})
        except jwt.InvalidTokenError:
            return "InvalidProviderToken"
        if claims["iss"] != self.team_id:
            return "InvalidProviderToken"
        if time.time() - claims["iat"] > 3600:
            return "ExpiredProviderToken"
        return None

    async def send(self, request: Request) -> Response:
        if request.scope.get("http_version") != "2":
            return Response(status_code=505)  # APNs speaks HTTP/2 only
        bad_token = self._check_token(request)
        if bad_token:
            return reason(403, bad_token)
        token = request.path_params["token"]
        headers = {k: v for k, v in request.headers.items() if k.startswith("apns-")}
        push_type = headers.get("apns-push-type")
        priority = headers.get("apns-priority", "10")
        if headers.get("apns-topic") != self.topic:
            return reason(400, "TopicDisallowed")
        if push_type not in ("alert", "background"):
            return reason(400, "InvalidPushType")
        if priority not in ("5", "10") or (push_type == "background" and priority != "5"):
            return reason(400, "BadPriority")
        if not headers.get("apns-expiration", "0").isdigit():
            return reason(400, "BadExpirationDate")
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return reason(400, "BadCollapseId")
        if not re.fullmatch(r"[0-9a-f]{64,200}", token):
            return reason(400, "BadDeviceToken")
        body = await request.body()
        if len(body) > 4096:
            return reason(413, "PayloadTooLarge")
        try:
            payload = orjson.loads(body)
            aps = payload["aps"]
        except (ValueError, KeyError, TypeError):
            return reason(400, "PayloadEmpty")
        if push_type == "background" and aps.get("content-available") != 1:
            return reason(400, "BadPayload")
        status = await self.next_status(token)
        if status != 200:
            return reason(status, REASONS.get(status, "InternalServerError"))
        self.record(token, headers, payload)
        return Response(status_code=200, headers={"apns-id": "00000000-0000-0000-0000-000000000000"})

    def routes(self) -> list[Route]:
        return [Route("/3/device/{token}", self.send, methods=["POST"])]
