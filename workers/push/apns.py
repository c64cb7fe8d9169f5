"""APNs: HTTP/2 ``POST /3/device/{token}`` with an ES256 provider token.

The provider token (JWT: ``iss`` team id, ``iat``; header ``kid`` key id) is reused for 50 minutes: Apple rejects
one older than an hour and throttles refreshing more often than every 20 minutes. ``410 Unregistered`` and
``400 BadDeviceToken`` remove the device; 429 and 5xx are retried; ``403 ExpiredProviderToken`` refreshes it.
"""

from __future__ import annotations

import time

import jwt

from ticker_service.push.device import Device

from .base import SENT, Outcome, transient
from .h2client import Http2Client
from .payload import Alert, PerAlert, apns_headers, apns_payload

TOKEN_LIFETIME = 50 * 60
DEAD = {(410, "Unregistered"), (400, "BadDeviceToken")}


class ApnsBridge:
    platform = "apns"

    def __init__(self, key_pem: str, key_id: str, team_id: str, topic: str, base_url: str, client: Http2Client) -> None:
        self.key_pem = key_pem
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.base_url = base_url.rstrip("/")
        self.client = client
        self._built: PerAlert[tuple[bytes, dict[str, str]]] = PerAlert()  # payload and headers, once per alert
        self._token = ""
        self._issued = 0.0

    def describe(self) -> str:
        return f"topic {self.topic}, team {self.team_id}, key {self.key_id}, {self.base_url}"

    def provider_token(self) -> str:
        now = time.time()
        if not self._token or now - self._issued > TOKEN_LIFETIME:
            claims = {"iss": self.team_id, "iat": int(now)}
            self._token = jwt.encode(claims, self.key_pem, algorithm="ES256", headers={"kid": self.key_id})
            self._issued = now
        return self._token

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, device: Device, alert: Alert) -> Outcome:
        payload, alert_headers = self._built.get_or_build(alert, lambda a: (apns_payload(a), apns_headers(a)))
        headers = {"authorization": f"bearer {self.provider_token()}", "apns-topic": self.topic, **alert_headers}
        response = await self.client.post(f"{self.base_url}/3/device/{device.address}", payload, headers)
        if response.status_code == 200:
            return SENT
        try:
            reason = str(response.json().get("reason", ""))
        except ValueError:
            reason = ""
        detail = f"{response.status_code} {reason}".strip()
        if (response.status_code, reason) in DEAD:
            return Outcome("dead", None, detail)
        if response.status_code == 403 and reason == "ExpiredProviderToken":
            self._token = ""
            return Outcome("retry", 0.0, detail)
        return transient(response, detail) or Outcome("failed", None, detail)
