"""Payloads without I/O: urgency mapping, TTL from expiry, size limits with grapheme-safe shortening, direction."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import regex

from ticker_service.events import Event
from ticker_service.push.settings import PushSettings
from workers.push.bridges import build_bridges
from workers.push.payload import (
    APNS_LIMIT,
    FCM_LIMIT,
    WEBPUSH_LIMIT,
    Alert,
    alert_for,
    apns_payload,
    delivery,
    fcm_message,
    shorten,
    webpush_payload,
)


def event(headline: str = "BREAKING: x", language: str = "en", urgency: int = 1, **extra: object) -> Event:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    doc = {
        "uri": "urn:ticker:flash:abc123",
        "version": "1",
        "versionCreated": now,
        "language": language,
        "urgency": urgency,
        "headlines": [{"role": "main", "value": headline}],
        "subjects": [{"literal": "politics"}],
        **extra,
    }
    return Event("e1-1-0", "flash", doc)


def test_urgency_table() -> None:
    """1–2 are time-sensitive/high everywhere; lower urgencies map down."""
    assert delivery(1) == delivery(2)
    assert (delivery(1).apns_priority, delivery(1).interruption, delivery(1).fcm_priority) == (
        10,
        "time-sensitive",
        "HIGH",
    )
    assert [delivery(u).webpush_urgency for u in (1, 4, 6, 9)] == ["high", "normal", "low", "very-low"]
    assert [delivery(u).apns_priority for u in (3, 6)] == [10, 5]


def test_ttl_follows_expiry_and_expired_flashes_are_not_sent() -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=120)).isoformat()
    alert = alert_for(event(expires=soon), default_ttl=3600)
    assert alert is not None and 100 < alert.ttl <= 120
    assert alert_for(event(expires=(datetime.now(UTC) - timedelta(seconds=1)).isoformat()), 3600) is None
    default = alert_for(event(), default_ttl=3600)
    assert default is not None and 3590 < default.ttl <= 3600
    assert abs(default.expires_at - (time.time() + default.ttl)) < 2


def test_direction_from_language() -> None:
    assert alert_for(event(language="ar-EG"), 60).dir == "rtl"  # type: ignore[union-attr]
    assert alert_for(event(language="he"), 60).dir == "rtl"  # type: ignore[union-attr]
    assert alert_for(event(language="en"), 60).dir == "ltr"  # type: ignore[union-attr]


@pytest.mark.parametrize("unit", ["👨‍👩‍👧‍👦", "é", "ك", "🇵🇸", "a"])
def test_shorten_cuts_between_graphemes(unit: str) -> None:
    text = unit * 2000
    short = shorten(text, 1000)
    assert len(short.encode()) <= 1000 and short.endswith("…")
    body = short.removesuffix("…")
    assert regex.findall(r"\X", body) == [unit] * len(regex.findall(r"\X", body))


def test_every_payload_within_its_limit() -> None:
    """A huge headline (family emoji, combining accents) is shortened to fit each service's limit."""
    alert = alert_for(event(headline="👨‍👩‍👧‍👦e\u0301" * 1000), 3600)
    assert isinstance(alert, Alert)
    web = webpush_payload(alert)
    apns = apns_payload(alert)
    fcm = fcm_message(alert, "token")
    assert len(web) <= WEBPUSH_LIMIT and len(apns) <= APNS_LIMIT
    assert len(orjson.dumps({"notification": fcm["notification"], "data": fcm["data"]})) <= FCM_LIMIT
    for headline in (orjson.loads(web)["headline"], orjson.loads(apns)["aps"]["alert"]["body"]):
        assert headline.endswith("…")
        assert set(regex.findall(r"\X", headline.removesuffix("…"))) <= {"👨‍👩‍👧‍👦", "e\u0301"}
    assert len(web) > WEBPUSH_LIMIT - 100  # shortened only as much as needed


def test_bridges_off_until_configured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ticker.push")
    assert build_bridges(PushSettings(), request_timeout=1.0) == {}
    for platform in ("fcm", "apns", "webpush"):
        assert f"push bridge {platform}: off" in caplog.text
