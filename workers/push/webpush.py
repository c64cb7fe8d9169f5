"""Web Push (RFC 8030) with an aes128gcm-encrypted payload (RFC 8291) and VAPID (RFC 8292).

Each message is encrypted for the subscription's ``p256dh``/``auth`` with a fresh ephemeral key (``http_ece``).
The VAPID JWT (ES256; ``aud`` the push service's origin, ``exp`` at most 24 h ahead, ``sub`` a contact) is cached
per origin for 12 hours. ``Topic`` is the collapse id (the story, else the flash), so a correction or withdrawal
replaces a message still queued for an offline browser. 404 and 410 mean the subscription is gone.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import http_ece
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from ticker_service.push.device import Device
from ticker_service.push.vapid import b64url_decode, public_key_b64

from .base import SENT, Outcome, transient
from .payload import Alert, webpush_payload, webpush_topic

VAPID_LIFETIME = 12 * 3600


class WebPushBridge:
    platform = "webpush"

    def __init__(self, key: ec.EllipticCurvePrivateKey, subject: str, client: httpx.AsyncClient) -> None:
        self.key = key
        self.public_key = public_key_b64(key)
        self.subject = subject
        self.client = client
        self._vapid: dict[str, tuple[str, float]] = {}

    def describe(self) -> str:
        return f"VAPID key {self.public_key[:12]}…, subject {self.subject}"

    def authorization(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        token, expires = self._vapid.get(origin, ("", 0.0))
        now = time.time()
        if expires - now < 3600:
            expires = now + VAPID_LIFETIME
            claims = {"aud": origin, "exp": int(expires), "sub": self.subject}
            token = jwt.encode(claims, self.key, algorithm="ES256")
            self._vapid[origin] = (token, expires)
        return f"vapid t={token}, k={self.public_key}"

    def encrypt(self, device: Device, plaintext: bytes) -> bytes:
        body: bytes = http_ece.encrypt(
            plaintext,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            dh=b64url_decode(device.p256dh),
            auth_secret=b64url_decode(device.auth),
            version="aes128gcm",
        )
        return body

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, device: Device, alert: Alert) -> Outcome:
        headers = {
            "Authorization": self.authorization(device.address),
            "TTL": str(alert.ttl),
            "Urgency": alert.delivery.webpush_urgency,
            "Topic": webpush_topic(alert),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        body = self.encrypt(device, webpush_payload(alert))
        response = await self.client.post(device.address, content=body, headers=headers)
        if response.status_code in (200, 201, 202):
            return SENT
        detail = f"{response.status_code} {response.text[:200]}".strip()
        if response.status_code in (404, 410):
            return Outcome("dead", None, detail)
        return transient(response, detail) or Outcome("failed", None, detail)
