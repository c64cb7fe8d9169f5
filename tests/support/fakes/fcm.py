"""Google's OAuth 2 token endpoint (JWT bearer grant, RS256 checked against the service account's key) and FCM's
HTTP v1 ``messages:send`` (requires that access token; answers with FCM's error bodies)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Fake

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
ERRORS = {
    400: ("INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    429: ("RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'."),
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}
FCM_CODES = {400: "INVALID_ARGUMENT", 404: "UNREGISTERED", 429: "QUOTA_EXCEEDED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def fcm_error(status: int, message: str | None = None, details: list[dict[str, Any]] | None = None) -> Response:
    name, default = ERRORS.get(status, ("UNKNOWN", "Unknown error"))
    if details is None:
        details = [{"@type": FCM_ERROR, "errorCode": FCM_CODES.get(status, name)}]
        if status == 400:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}],
                }
            )
    body = {"error": {"code": status, "message": message or default, "status": name, "details": details}}
    headers = {"Retry-After": "1"} if status in (429, 503) else {}
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class FakeFcm(Fake):
    project: str = "ticker-test"
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    key_id: str = "k1"
    email: str = "ticker@ticker-test.iam.gserviceaccount.com"
    tokens: set[str] = field(default_factory=set)
    grants: int = 0
    base_url: str = ""

    def service_account(self) -> dict[str, str]:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "type": "service_account",
            "project_id": self.project,
            "private_key_id": self.key_id,
            "private_key": pem.decode(),
            "client_email": self.email,
            "token_uri": f"{self.base_url}/token",
        }

    async def token(self, request: Request) -> Response:
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != GRANT:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        assertion = str(form.get("assertion", ""))
        try:
            if jwt.get_unverified_header(assertion).get("kid") != self.key_id:
                raise jwt.InvalidTokenError("unknown kid")
            claims = jwt.decode(
                assertion,
                self.key.public_key(),
                algorithms=["RS256"],
                audience=f"{self.base_url}/token",
                issuer=self.email,
                options={"require": ["exp", "iat", "iss", "aud", "scope"]},
            )
            if SCOPE not in str(claims["scope"]).split() or claims["exp"] - claims["iat"] > 3600:
                raise jwt.InvalidTokenError("scope or lifetime")
        except jwt.InvalidTokenError as exc:
            return JSONResponse({"error": "invalid_grant", "error_description": str(exc)}, status_code=400)
        access = "ya29." + secrets.token_urlsafe(32)
        with self.lock:
            self.tokens.add(access)
            self.grants += 1
        return JSONResponse({"access_token": access, "expires_in": 3599, "token_type": "Bearer"})

    async def send(self, request: Request) -> Response:
        scheme, _, access = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or access not in self.tokens:
            return JSONResponse(
                {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials.",
                        "status": "UNAUTHENTICATED",
                    }
                },
                status_code=401,
            )
        if request.path_params["project"] != self.project:
            return fcm_error(404, "Project not found", details=[])
        try:
            message = orjson.loads(await request.body())["message"]
        except (ValueError, KeyError, TypeError):
            return fcm_error(400, "Invalid JSON payload received.", details=[])
        problem = _check(message)
        if problem:
            return fcm_error(400, problem, details=[])
        token = message["token"] if "token" in message else f"topic:{message['topic']}"
        status = await self.next_status(token)
        if status != 200:
            return fcm_error(status)
        self.record(token, dict(request.headers), message)
        return JSONResponse({"name": f"projects/{self.project}/messages/{secrets.token_hex(8)}"})

    def routes(self) -> list[Route]:
        return [
            Route("/token", self.token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", self.send, methods=["POST"]),
        ]


def _check(message: dict[str, Any]) -> str | None:
    """What FCM itself rejects with INVALID_ARGUMENT."""
    if sum(k in message for k in ("token", "topic", "condition")) != 1:
        return "Exactly one of token, topic or condition must be set."
    if "topic" in message and not re.fullmatch(r"[a-zA-Z0-9\-_.~%]{1,900}", message["topic"]):
        return "Invalid topic name."
    data = message.get("data", {})
    if not all(isinstance(v, str) for v in data.values()):
        return "Invalid value at 'message.data': values must be strings."
    android = message.get("android", {})
    if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
        return "Invalid value at 'message.android.priority'."
    if "ttl" in android and not re.fullmatch(r"\d+(\.\d{1,9})?s", android["ttl"]):
        return "Invalid value at 'message.android.ttl'."
    apns = message.get("apns", {})
    headers = apns.get("headers", {})
    if not all(isinstance(v, str) for v in headers.values()):
        return "Invalid value at 'message.apns.headers': values must be strings."
    if headers.get("apns-priority", "10") not in ("5", "10") or not headers.get("apns-expiration", "0").isdigit():
        return "Invalid value at 'message.apns.headers'."
    if len(headers.get("apns-collapse-id", "").encode()) > 64:
        return "Invalid value at 'message.apns.headers': apns-collapse-id is longer than 64 bytes."
    if headers.get("apns-push-type") == "background" and (
        headers.get("apns-priority") != "5" or apns.get("payload", {}).get("aps", {}).get("content-available") != 1
    ):
        return "A background APNs message needs apns-priority 5 and aps.content-available 1."
    size = len(orjson.dumps({"notification": message.get("notification"), "data": data}))
    if size > 4096:
        return f"Message is too big: {size} bytes."
    return None
