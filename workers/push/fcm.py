"""FCM HTTP v1: ``POST /v1/projects/{project}/messages:send`` with an OAuth 2 access token.

The token comes from the service account's key by the JWT bearer grant (RFC 7523): a JWT signed RS256 with the
key, posted to the key's ``token_uri``; it is cached until five minutes before it expires. Errors are FCM's
(``error.details[].errorCode``): ``UNREGISTERED`` (404) and ``INVALID_ARGUMENT`` about ``message.token`` remove
the device; 429 and 5xx are retried; a 401 drops the cached token and retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
import orjson

from ticker_service.push.device import Device

from .base import SENT, Answer, Outcome, transient
from .h2client import Http2Client
from .payload import Alert, PerAlert, fcm_message, fcm_template

logger = logging.getLogger("ticker.push.fcm")
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
REFRESH_MARGIN = 300


class FcmBridge:
    platform = "fcm"

    def __init__(
        self, key_json: str, project: str | None, base_url: str, client: httpx.AsyncClient, sender: Http2Client
    ) -> None:
        key = orjson.loads(key_json)
        self.email: str = key["client_email"]
        self.private_key: str = key["private_key"]
        self.key_id: str | None = key.get("private_key_id")
        self.token_uri: str = key.get("token_uri") or "https://oauth2.googleapis.com/token"
        self.project: str = project or key["project_id"]
        self.url = f"{base_url.rstrip('/')}/v1/projects/{self.project}/messages:send"
        self.client = client  # for the OAuth token endpoint
        self.sender = sender  # for the sends
        self._templates: PerAlert[tuple[bytes, bytes]] = PerAlert()
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        return f"project {self.project} as {self.email}"

    def assertion(self, now: int) -> str:
        claims = {"iss": self.email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600}
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)

    async def access_token(self) -> str:
        async with self._lock:
            if self._token is None or time.time() > self._expires - REFRESH_MARGIN:
                now = int(time.time())
                response = await self.client.post(
                    self.token_uri, data={"grant_type": GRANT, "assertion": self.assertion(now)}
                )
                response.raise_for_status()
                body = response.json()
                self._token = str(body["access_token"])
                self._expires = now + float(body.get("expires_in", 3600))
            return self._token

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.sender.aclose()

    async def send(self, device: Device, alert: Alert) -> Outcome:
        head, tail = self._templates.get_or_build(alert, fcm_template)  # the message is built once per alert
        return await self._send(head + orjson.dumps(device.address) + tail)

    async def send_topic(self, topic: str, alert: Alert) -> Outcome:
        """One message to every device the apps subscribed to ``topic``."""
        return await self._send(orjson.dumps({"message": fcm_message(alert, topic, target="topic")}))

    async def _send(self, body: bytes) -> Outcome:
        if self._token is None or time.time() > self._expires - REFRESH_MARGIN:
            try:
                await self.access_token()
            except httpx.HTTPStatusError as exc:
                return Outcome("retry", None, f"token endpoint answered {exc.response.status_code}")
        response = await self.sender.post(
            self.url,
            content=body,
            headers={"authorization": f"Bearer {self._token}", "content-type": "application/json"},
        )
        if response.status_code == 200:
            return SENT
        status, code, token_field = _error(response)
        detail = f"{response.status_code} {status} {code}".strip()
        if response.status_code == 401:
            self._token = None
            return Outcome("retry", 0.0, detail)
        if code == "UNREGISTERED" or (code == "INVALID_ARGUMENT" and token_field):
            return Outcome("dead", None, detail)
        return transient(response, detail) or Outcome("failed", None, detail)


def _error(response: Answer) -> tuple[str, str, bool]:
    """(``error.status``, the FcmError ``errorCode``, whether a field violation names ``message.token``)."""
    try:
        error: dict[str, Any] = response.json().get("error", {})
    except ValueError:
        return "", "", False
    code, token_field = "", False
    for detail in error.get("details", []):
        if str(detail.get("@type", "")).endswith("FcmError"):
            code = str(detail.get("errorCode", ""))
        for violation in detail.get("fieldViolations", []):
            token_field = token_field or violation.get("field") == "message.token"
    return str(error.get("status", "")), code or str(error.get("status", "")), token_field
