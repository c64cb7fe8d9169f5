"""What every bridge shares: the outcome of one send, and how HTTP answers map to it.

Outcomes: ``sent``; ``dead`` (the service says the token or subscription is gone: the device is removed);
``retry`` (429, 5xx, no connection: try again after ``retry_after`` or a backoff); ``failed`` (anything else,
logged; retrying would not help); ``unknown`` (timed out or cut off after the request went out: it may have been
delivered, so it is not sent again).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Literal, Protocol

import httpx

from ticker_service.push.device import Device

from .h2client import Http2Client, Response
from .payload import Alert

OutcomeKind = Literal["sent", "dead", "retry", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    retry_after: float | None = None
    detail: str = ""


SENT = Outcome("sent")


class Bridge(Protocol):
    """Sends one alert to one device. Never raises for the service's answers: they become an :class:`Outcome`."""

    platform: str

    def describe(self) -> str:
        """Who we send as, for the start-up log."""
        ...

    async def send(self, device: Device, alert: Alert) -> Outcome: ...

    async def aclose(self) -> None: ...


Answer = httpx.Response | Response  # the token endpoint's (httpx) or a push service's (Http2Client)


def retry_after(response: Answer) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), if the response has one."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def transient(response: Answer, detail: str) -> Outcome | None:
    """429 and 5xx: worth another try."""
    if response.status_code == 429 or response.status_code >= 500:
        return Outcome("retry", retry_after(response), detail)
    return None


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def push_client(ca_file: Path | None, timeout: float) -> Http2Client:
    """The sends' HTTP/2 client, kept open for the worker's life: one TLS connection carries many concurrent
    sends (a second one opens only when the server's stream limit is reached)."""
    return Http2Client(tls_context(ca_file), timeout)


def http_client(ca_file: Path | None, timeout: float, connections: int) -> httpx.AsyncClient:
    """An httpx client for the rare requests off the send path (FCM's OAuth token)."""
    context = tls_context(ca_file)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(http2=True, verify=context, timeout=timeout, limits=limits)
