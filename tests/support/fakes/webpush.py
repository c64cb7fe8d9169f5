"""A browser push service (RFC 8030): checks VAPID (RFC 8292) and the headers, and decrypts the aes128gcm payload
(RFC 8291) with the subscription's private key, as the browser would."""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass, field

import http_ece
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .base import Fake

URGENCIES = ("very-low", "low", "normal", "high")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class FakeWebPush(Fake):
    base_url: str = ""
    vapid_public_key: str = ""  # the applicationServerKey the subscriptions were made with
    keys: dict[str, tuple[ec.EllipticCurvePrivateKey, bytes]] = field(default_factory=dict)

    def subscribe(self) -> dict[str, object]:
        """A new subscription, as ``PushSubscription.toJSON()`` gives it to the page."""
        sub_id = secrets.token_hex(8)
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        self.keys[sub_id] = (key, auth)
        raw = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {
            "endpoint": f"{self.base_url}/push/{sub_id}",
            "expirationTime": None,
            "keys": {"p256dh": b64(raw), "auth": b64(auth)},
        }

    def _check_vapid(self, request: Request) -> str | None:
        value = request.headers.get("authorization", "")
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", value)
        if not match:
            return "no VAPID authorization"
        token, key = match.groups()
        if self.vapid_public_key and key != self.vapid_public_key:
            return "VAPID key does not match the subscription's applicationServerKey"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(key))
        try:
            claims = jwt.decode(
                token, public, algorithms=["ES256"], audience=self.base_url, options={"require": ["exp", "aud", "sub"]}
            )
        except jwt.InvalidTokenError as exc:
            return f"bad VAPID JWT: {exc}"
        if claims["exp"] > time.time() + 86400:
            return "VAPID exp more than 24 hours ahead"
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return "VAPID sub is not a mailto: or https: contact"
        return None

    async def push(self, request: Request) -> Response:
        sub_id = request.path_params["sub_id"]
        problem = self._check_vapid(request)
        if problem:
            return Response(problem, status_code=403)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not headers.get("ttl", "").isdigit():
            return Response("TTL header required", status_code=400)
        if headers.get("urgency", "normal") not in URGENCIES:
            return Response("bad Urgency", status_code=400)
        topic = headers.get("topic")
        if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
            return Response("bad Topic", status_code=400)
        if headers.get("content-encoding") != "aes128gcm":
            return Response("Content-Encoding must be aes128gcm", status_code=415)
        body = await request.body()
        if len(body) > 4096:
            return Response("payload too large", status_code=413)
        if sub_id not in self.keys:
            return Response("no such subscription", status_code=404)
        key, auth = self.keys[sub_id]
        try:
            plaintext = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
        except Exception as exc:
            return Response(f"cannot decrypt: {exc}", status_code=400)
        if len(plaintext) > 3993:
            return Response("plaintext over 3993 bytes", status_code=413)
        status = await self.next_status(sub_id)
        if status != 200:
            return Response(status_code=status, headers={"Retry-After": "1"} if status in (429, 503) else {})
        self.record(sub_id, headers, orjson.loads(plaintext))
        return Response(status_code=201, headers={"Location": f"{self.base_url}/message/{secrets.token_hex(8)}"})

    def routes(self) -> list[Route]:
        return [Route("/push/{sub_id}", self.push, methods=["POST"])]
