"""Web Push (RFC 8030) with an aes128gcm-encrypted payload (RFC 8291) and VAPID (RFC 8292).

Each message is encrypted for the subscription's ``p256dh``/``auth`` with a fresh ephemeral key (:mod:`.ece`).
The VAPID JWT (ES256; ``aud`` the push service's origin, ``exp`` at most 24 h ahead, ``sub`` a contact) is cached
per origin for 12 hours. ``Topic`` is the collapse id (the story, else the flash), so a correction or withdrawal
replaces a message still queued for an offline browser. 404 and 410 mean the subscription is gone.
"""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from ticker_service.push.device import Device
from ticker_service.push.vapid import b64url_decode, public_key_b64

from . import ece
from .base import SENT, Outcome, transient
from .h2client import Http2Client
from .payload import Alert, PerAlert, webpush_payload, webpush_topic

VAPID_LIFETIME = 12 * 3600


class WebPushBridge:
    platform = "webpush"

    def __init__(self, key: ec.EllipticCurvePrivateKey, subject: str, client: Http2Client) -> None:
        self.key = key
        self.public_key = public_key_b64(key)
        self.subject = subject
        self.client = client
        self._vapid: dict[str, tuple[str, float]] = {}
        self._built: PerAlert[tuple[bytes, dict[str, str]]] = PerAlert()  # plaintext and headers, once per alert

    def describe(self) -> str:
        return f"VAPID key {self.public_key[:12]}…, subject {self.subject}"

    def authorization(self, endpoint: str) -> str:
        scheme, _, rest = endpoint.partition("://")  # urlsplit's scheme and netloc (endpoints carry no credentials)
        origin = f"{scheme}://{rest.split('/', 1)[0]}"
        token, expires = self._vapid.get(origin, ("", 0.0))
        now = time.time()
        if expires - now < 3600:
            expires = now + VAPID_LIFETIME
            claims = {"aud": origin, "exp": int(expires), "sub": self.subject}
            token = jwt.encode(claims, self.key, algorithm="ES256")
            self._vapid[origin] = (token, expires)
        return f"vapid t={token}, k={self.public_key}"

    def encrypt(self, device: Device, plaintext: bytes) -> bytes:
        """Per message: a fresh ephemeral key and salt (the ECDH is most of a Web Push send's CPU)."""
        return ece.encrypt(plaintext, b64url_decode(device.p256dh), b64url_decode(device.auth))

    @staticmethod
    def _build(alert: Alert) -> tuple[bytes, dict[str, str]]:
        headers = {
            "ttl": str(alert.ttl),
            "urgency": alert.delivery.webpush_urgency,
            "topic": webpush_topic(alert),
            "content-encoding": "aes128gcm",
            "content-type": "application/octet-stream",
        }
        return webpush_payload(alert), headers

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, device: Device, alert: Alert) -> Outcome:
        plaintext, alert_headers = self._built.get_or_build(alert, self._build)
        headers = {"authorization": self.authorization(device.address), **alert_headers}
        response = await self.client.post(device.address, self.encrypt(device, plaintext), headers)
        if response.status_code in (200, 201, 202):
            return SENT
        detail = f"{response.status_code} {response.text[:200]}".strip()
        if response.status_code in (404, 410):
            return Outcome("dead", None, detail)
        return transient(response, detail) or Outcome("failed", None, detail)
