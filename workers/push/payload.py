"""What a notification says and how urgently it is delivered, per push service, within each service's size limit.

IPTC urgency → delivery (docs/push.md has the same table):

========  ==================  =================  ===========================
urgency   APNs priority       FCM (Android)      Web Push ``Urgency``
========  ==================  =================  ===========================
1–2       10, time-sensitive  HIGH               high
3–5       10, active          HIGH               normal
6–7       5, passive          NORMAL             low
8–9       5, passive          NORMAL             very-low
========  ==================  =================  ===========================

A correction carries the same collapse id (:func:`collapse_id`: the story, else the flash) as APNs
``apns-collapse-id``, FCM ``collapse_key`` and Android notification ``tag``, the Web Push ``Topic`` and the service
worker's notification tag, so it replaces the first notification. A withdrawal is a data message (APNs background
push, FCM data only, a Web Push the service worker reads) naming that collapse id, so the app or page removes the
notification it shows for the flash.

Notifications expire ``TICKER_PUSH_BREAKING_TTL_SECONDS`` after their version was published, or when the flash
``expires`` if sooner (a withdrawal ignores ``expires``: a killed flash must leave the shades even after it).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import orjson
import regex

from ticker_service import stories
from ticker_service.events import Event
from ticker_service.flashes import Document, flash_id_of

FCM_LIMIT = 4096  # bytes of notification + data
APNS_LIMIT = 4096  # bytes of the JSON payload
WEBPUSH_LIMIT = 3993  # bytes of plaintext: 4096 on the wire less the aes128gcm header, delimiter and tag
ELLIPSIS = "…"
# Primary language subtags written right to left.
RTL = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku", "nqo", "ps", "sd", "syr", "ug", "ur", "yi"})
_GRAPHEME = regex.compile(r"\X")
T = TypeVar("T")
_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")  # RFC 8030 §5.4: at most 32 characters of the base64url alphabet


@dataclass(frozen=True, slots=True)
class Delivery:
    apns_priority: int
    interruption: str
    fcm_priority: str
    webpush_urgency: str


def delivery(urgency: int) -> Delivery:
    if urgency <= 2:
        return Delivery(10, "time-sensitive", "HIGH", "high")
    if urgency <= 5:
        return Delivery(10, "active", "HIGH", "normal")
    if urgency <= 7:
        return Delivery(5, "passive", "NORMAL", "low")
    return Delivery(5, "passive", "NORMAL", "very-low")


@dataclass(frozen=True, slots=True)
class Alert:
    """One event, ready to be put in any service's message."""

    kind: Literal["flash", "update", "withdraw"]
    flash_id: str
    version: str
    event_id: str
    headline: str
    lang: str
    dir: Literal["ltr", "rtl"]
    urgency: int
    category: str
    url: str | None
    ttl: int  # seconds the notification stays worth delivering
    expires_at: int  # unix time
    story: str = ""  # the flash's story (ninjs ``events[0].id``), if it names one
    # ``<flash id>:<version>`` of the event the send is claimed under (at most once per device), when the alert
    # shows another version of the story than the event's (choice.py); empty: this alert's own.
    claim: str = ""

    @property
    def collapse_id(self) -> str:
        """What replaces and removes the notification (see :func:`collapse_id`)."""
        return self.story or self.flash_id

    @property
    def delivery(self) -> Delivery:
        return delivery(self.urgency)

    def fields(self, headline: str | None = None) -> dict[str, str]:
        """The message's data as strings (FCM data values must be strings)."""
        data = {
            "type": self.kind,
            "flash_id": self.flash_id,
            "collapse_id": self.collapse_id,
            "version": self.version,
            "event_id": self.event_id,
            "lang": self.lang,
            "dir": self.dir,
            "urgency": str(self.urgency),
            "category": self.category,
        }
        if self.url:
            data["url"] = self.url
        if headline is not None:
            data["headline"] = headline
        return data


def story_of(doc: Document) -> str:
    """The flash's story (ninjs ``events[0].id``), or ``""``."""
    return stories.story_of(doc) or ""


def collapse_id(doc: Document) -> str:
    """What a notification is replaced and removed by: the flash's story, so the versions of one story share one
    notification, else the flash id. The one place this rule lives (:attr:`Alert.collapse_id` applies it too)."""
    return story_of(doc) or flash_id_of(doc)


def webpush_topic(alert: Alert) -> str:
    """The Web Push ``Topic``: the collapse id when it fits RFC 8030's 32 base64url characters, else a digest of it
    (a story id may have 64)."""
    if _TOPIC.fullmatch(alert.collapse_id):
        return alert.collapse_id
    return base64.urlsafe_b64encode(hashlib.sha256(alert.collapse_id.encode()).digest()[:24]).decode()


def alert_for(event: Event, ttl_seconds: int, now: float | None = None) -> Alert | None:
    """The alert for ``event``, or ``None`` when the flash has expired (a late notification is not sent)."""
    if event.type not in ("flash", "update", "withdraw"):
        return None
    doc = event.flash
    now = time.time() if now is None else now
    # Relevance runs from when this version was published, so a job that runs late does not notify late.
    created = doc.get("versionCreated")
    ttl = ttl_seconds - int(now - datetime.fromisoformat(created).timestamp()) if created else ttl_seconds
    if doc.get("expires") and event.type != "withdraw":
        ttl = min(ttl, int(datetime.fromisoformat(doc["expires"]).timestamp() - now))
    if ttl <= 0:
        return None
    lang = str(doc.get("language", ""))
    stories = [a["uri"] for a in doc.get("associations", ()) if a.get("rel") == "story"]
    return Alert(
        kind=event.type,
        flash_id=flash_id_of(doc),
        version=str(doc["version"]),
        event_id=event.event_id,
        headline=doc["headlines"][0]["value"],
        lang=lang,
        dir="rtl" if lang.split("-")[0].lower() in RTL else "ltr",
        urgency=int(doc.get("urgency", 9)),
        category=(doc.get("subjects") or [{}])[0].get("literal", ""),
        url=stories[0] if stories else None,
        ttl=ttl,
        expires_at=int(now) + ttl,
        story=story_of(doc),
    )


def fcm_topic(alert: Alert) -> str:
    """The FCM topic apps subscribe to for this flash: ``<language>-<category>``, e.g. ``en-politics``."""
    return f"{alert.lang.split('-')[0].lower()}-{alert.category}"


def shorten(text: str, max_bytes: int) -> str:
    """``text`` in at most ``max_bytes`` of UTF-8, cut between grapheme clusters and ending in an ellipsis."""
    if len(text.encode()) <= max_bytes:
        return text
    budget = max_bytes - len(ELLIPSIS.encode())
    out: list[str] = []
    for cluster in _GRAPHEME.findall(text):
        size = len(cluster.encode())
        if size > budget:
            break
        out.append(cluster)
        budget -= size
    return "".join(out).rstrip() + ELLIPSIS


def fit(build: Callable[[str], bytes], headline: str, limit: int) -> bytes:
    """``build(headline)`` shortened until it is at most ``limit`` bytes."""
    body = build(headline)
    target = len(headline.encode())
    while len(body) > limit:
        target -= len(body) - limit
        if target < len(ELLIPSIS.encode()):
            raise ValueError("the message does not fit even without its headline")
        body = build(shorten(headline, target))
    return body


def webpush_payload(alert: Alert) -> bytes:
    """The plaintext the service worker reads (``ticker-push`` JSON)."""
    if alert.kind == "withdraw":
        return orjson.dumps(alert.fields())
    return fit(lambda h: orjson.dumps(alert.fields(h)), alert.headline, WEBPUSH_LIMIT)


def apns_headers(alert: Alert) -> dict[str, str]:
    """The ``apns-*`` headers of the alert, for APNs directly and for FCM's ``apns`` block: a withdrawal is a
    background push, which Apple requires at priority 5."""
    withdraw = alert.kind == "withdraw"
    return {
        "apns-push-type": "background" if withdraw else "alert",
        "apns-priority": "5" if withdraw else str(alert.delivery.apns_priority),
        "apns-expiration": str(alert.expires_at),
        "apns-collapse-id": alert.collapse_id,
    }


def apns_payload(alert: Alert) -> bytes:
    ticker = alert.fields()
    if alert.kind == "withdraw":
        return orjson.dumps({"aps": {"content-available": 1}, "ticker": ticker})
    aps: dict[str, Any] = {
        "alert": {"body": ""},
        "sound": "default",
        "interruption-level": alert.delivery.interruption,
        "thread-id": alert.category,
    }

    def build(headline: str) -> bytes:
        return orjson.dumps({"aps": {**aps, "alert": {"body": headline}}, "ticker": ticker})

    return fit(build, alert.headline, APNS_LIMIT)


def fcm_message(alert: Alert, token: str, target: str = "token") -> dict[str, Any]:
    """The ``message`` of an FCM HTTP v1 send to a ``token`` (or a ``topic``): a notification (data only for a
    withdrawal), replaced by tag; the ``apns`` headers carry the same expiry and collapse id for the iOS devices
    FCM reaches through APNs."""
    data = alert.fields()
    android: dict[str, Any] = {
        "priority": alert.delivery.fcm_priority,
        "ttl": f"{alert.ttl}s",
        "collapse_key": alert.collapse_id,
    }
    apns: dict[str, Any] = {"headers": apns_headers(alert)}
    message: dict[str, Any] = {target: token, "data": data, "android": android, "apns": apns}
    if alert.kind == "withdraw":
        apns["payload"] = {"aps": {"content-available": 1}}
        return message

    def build(headline: str) -> bytes:
        return orjson.dumps({"notification": {"body": headline}, "data": data})

    body = orjson.loads(fit(build, alert.headline, FCM_LIMIT))
    message["notification"] = body["notification"]
    android["notification"] = {"tag": alert.collapse_id}
    return message


def fcm_template(alert: Alert) -> tuple[bytes, bytes]:
    """The HTTP v1 body of a send to any token, built once per alert: ``head + orjson.dumps(token) + tail``."""
    message = fcm_message(alert, "")
    del message["token"]
    rest = orjson.dumps(message)  # '{"data":…}': the message's other fields, in one object
    return b'{"message":{"token":', b"," + rest[1:] + b"}"


class PerAlert(dict[Alert, T]):
    """What a bridge builds once per alert (a flash version in one language) and reuses for every device: the
    payload, its headers. Jobs of a few recent alerts run at once; older entries are dropped."""

    limit = 32

    def get_or_build(self, alert: Alert, build: Callable[[Alert], T]) -> T:
        built = self.get(alert)
        if built is None:
            if len(self) >= self.limit:
                del self[next(iter(self))]
            built = self[alert] = build(alert)
        return built
