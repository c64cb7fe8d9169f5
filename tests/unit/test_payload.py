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
    apns_headers,
    apns_payload,
    collapse_id,
    delivery,
    fcm_message,
    shorten,
    webpush_payload,
    webpush_topic,
)


def event(
    headline: str = "BREAKING: x", language: str = "en", urgency: int = 1, kind: str = "flash", **extra: object
) -> Event:
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
    return Event("e1-1-0", kind, doc)  # type: ignore[arg-type]


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
    alert = alert_for(event(expires=soon), 3600)
    assert alert is not None and 100 < alert.ttl <= 120
    assert alert_for(event(expires=(datetime.now(UTC) - timedelta(seconds=1)).isoformat()), 3600) is None
    default = alert_for(event(), 3600)
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


def test_ttl_runs_from_the_version_and_a_withdrawal_outlives_expires() -> None:
    """The breaking TTL counts from the version's publication; a withdrawal goes out even after ``expires``
    (the killed flash may still be in a shade), for the TTL from its own publication."""
    published = (datetime.now(UTC) - timedelta(seconds=600)).isoformat()
    late = alert_for(event(versionCreated=published), 3600)
    assert late is not None and 2990 < late.ttl <= 3000
    assert alert_for(event(versionCreated=published), 600) is None
    gone = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    kill = alert_for(event(kind="withdraw", expires=gone), 3600)
    assert kill is not None and 3590 < kill.ttl <= 3600


def test_collapse_id_is_the_story_else_the_flash() -> None:
    """One rule for every platform: ninjs ``events[0].id`` when the flash names a story, else the flash id."""
    plain = event()
    assert collapse_id(plain.flash) == "abc123"
    story = event(events=[{"id": "quake-" + "x" * 58}])
    assert collapse_id(story.flash) == "quake-" + "x" * 58
    assert collapse_id(event(events=[]).flash) == "abc123"
    alert = alert_for(story, 3600)
    assert alert is not None and alert.flash_id == "abc123" and alert.collapse_id == "quake-" + "x" * 58
    assert apns_headers(alert)["apns-collapse-id"] == alert.collapse_id
    message = fcm_message(alert, "token")
    assert message["android"]["collapse_key"] == message["android"]["notification"]["tag"] == alert.collapse_id
    assert message["apns"]["headers"]["apns-collapse-id"] == alert.collapse_id
    assert orjson.loads(webpush_payload(alert))["collapse_id"] == alert.collapse_id
    # RFC 8030 allows a Topic of 32 base64url characters: a longer story id is digested, the same every time.
    topic = webpush_topic(alert)
    assert regex.fullmatch(r"[A-Za-z0-9_-]{32}", topic) and topic == webpush_topic(alert)
    short = alert_for(event(events=[{"id": "quake"}]), 3600)
    assert short is not None and webpush_topic(short) == "quake"


def test_withdrawal_is_a_background_message_everywhere() -> None:
    """A withdrawal: APNs background push at priority 5, FCM data only with a background ``apns`` block."""
    kill = alert_for(event(kind="withdraw"), 3600)
    assert kill is not None
    assert apns_headers(kill)["apns-push-type"] == "background" and apns_headers(kill)["apns-priority"] == "5"
    assert orjson.loads(apns_payload(kill))["aps"] == {"content-available": 1}
    message = fcm_message(kill, "token")
    assert "notification" not in message and message["data"]["type"] == "withdraw"
    assert message["apns"]["payload"] == {"aps": {"content-available": 1}}
    assert message["apns"]["headers"]["apns-expiration"] == str(kill.expires_at)
