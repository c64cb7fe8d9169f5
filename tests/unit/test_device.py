"""A device registration as a phone or browser sends it (``push/device.py``), without a hub: each platform's address
rules, Web Push only over https to an allowed push service, the filter checked against the taxonomy, and a stored
record that reads back as the same device."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from ticker_service.filters import Filter
from ticker_service.push.device import (
    DEFAULT_MAX_URGENCY,
    Device,
    DeviceError,
    DeviceIn,
    device_from_input,
)
from ticker_service.push.settings import PushSettings
from ticker_service.settings import Settings

from ..support.devices import subscription

SETTINGS = Settings(redis_url=None)
PUSH = PushSettings(webpush_hosts=("fcm.googleapis.com", "*.push.services.mozilla.com"))
FCM_TOKEN = "fcm-token:" + "a" * 140
APNS_TOKEN = "AB" * 32


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def device(body: dict[str, Any]) -> Device:
    return device_from_input("d1", DeviceIn.model_validate(body), SETTINGS, PUSH)


def invalid(body: dict[str, Any]) -> str:
    """The model's complaint about ``body``."""
    with pytest.raises(ValidationError) as caught:
        DeviceIn.model_validate(body)
    return str(caught.value)


def refused(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The (field, message) pairs a valid-looking body is refused with."""
    with pytest.raises(DeviceError) as caught:
        device(body)
    return caught.value.errors


def test_an_fcm_token_is_stored_as_given() -> None:
    stored = device({"platform": "fcm", "token": FCM_TOKEN})
    assert (stored.platform, stored.address, stored.p256dh, stored.auth) == ("fcm", FCM_TOKEN, "", "")
    assert stored.filter == Filter(max_urgency=DEFAULT_MAX_URGENCY)


def test_an_apns_token_is_hex_and_stored_in_lower_case() -> None:
    assert device({"platform": "apns", "token": APNS_TOKEN}).address == APNS_TOKEN.lower()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"platform": "fcm", "token": "short"}, "not an FCM registration token"),
        ({"platform": "fcm", "token": "a" * 20 + " spaces " + "a" * 20}, "not an FCM registration token"),
        ({"platform": "fcm"}, "gives its token"),
        ({"platform": "apns", "token": "not-hex" * 10}, "not an APNs device token"),
        ({"platform": "apns", "token": "ab" * 31}, "not an APNs device token"),  # 62 hex digits: too short
        ({"platform": "fcm", "token": FCM_TOKEN, "subscription": subscription()}, "not a subscription"),
        ({"platform": "webpush", "token": FCM_TOKEN}, "gives its subscription"),
        ({"platform": "webpush", "subscription": subscription(), "token": FCM_TOKEN}, "not a token"),
        ({"platform": "sms", "token": FCM_TOKEN}, "platform"),
        ({"platform": "fcm", "token": FCM_TOKEN, "color": "red"}, "Extra inputs are not permitted"),
        ({"platform": "fcm", "token": FCM_TOKEN, "max_urgency": 0}, "max_urgency"),
        ({"platform": "fcm", "token": FCM_TOKEN, "max_urgency": 10}, "max_urgency"),
    ],
)
def test_each_platform_gives_its_own_kind_of_address(body: dict[str, Any], says: str) -> None:
    assert says in invalid(body)


def test_a_web_push_subscription_keeps_endpoint_and_keys_unpadded() -> None:
    sub = subscription("https://fcm.googleapis.com/fcm/send/abc123")
    padded = {**sub, "keys": {key: value + "=" * (-len(value) % 4) for key, value in sub["keys"].items()}}
    stored = device({"platform": "webpush", "subscription": padded})
    assert (stored.platform, stored.address) == ("webpush", sub["endpoint"])
    assert (stored.p256dh, stored.auth) == (sub["keys"]["p256dh"], sub["keys"]["auth"])


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({"p256dh": "AAAA", "auth": "AAAA"}, "p256dh must be an uncompressed P-256 public key"),
        ({"p256dh": b64url(b"\x04" + bytes(64))}, "p256dh must be an uncompressed P-256 public key"),  # off the curve
        ({"p256dh": "not base64url!", "auth": "AAAA"}, "p256dh must be base64url"),
        ({"auth": "c2hvcnQ"}, "auth must be 16 bytes"),
        ({"auth": "MDEyMzQ1Njc4OWFiY2RlZg+/"}, "auth must be base64url"),
    ],
)
def test_web_push_keys_are_a_p256_point_and_16_auth_bytes(keys: dict[str, str], says: str) -> None:
    sub = subscription()
    assert says in invalid({"platform": "webpush", "subscription": {**sub, "keys": {**sub["keys"], **keys}}})


def test_a_subscription_has_only_the_browser_s_fields() -> None:
    assert "subscription.extra" in invalid({"platform": "webpush", "subscription": {**subscription(), "extra": 1}})
    assert "endpoint" in invalid({"platform": "webpush", "subscription": {**subscription(), "endpoint": "x" * 1025}})


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("http://fcm.googleapis.com/fcm/send/x", "must be an https URL without credentials"),
        ("https://u:p@fcm.googleapis.com/fcm/send/x", "must be an https URL without credentials"),
        ("https:///fcm/send/x", "must be an https URL without credentials"),
        ("wss://fcm.googleapis.com/x", "must be an https URL without credentials"),
        ("https://evil.example/x", "'evil.example' is not on the allowlist"),
        ("https://fcm.googleapis.com.evil.example/x", "is not on the allowlist"),
        ("https://push.services.mozilla.com/x", "is not on the allowlist"),  # the wildcard wants a subdomain
    ],
)
def test_web_push_goes_only_over_https_to_an_allowed_push_service(endpoint: str, says: str) -> None:
    errors = refused({"platform": "webpush", "subscription": subscription(endpoint)})
    assert [field for field, _ in errors] == ["subscription.endpoint"]
    assert says in errors[0][1]


def test_a_wildcard_push_service_allows_its_subdomains() -> None:
    endpoint = "https://updates.push.services.mozilla.com/wpush/v2/x"
    assert device({"platform": "webpush", "subscription": subscription(endpoint)}).address == endpoint


def test_the_filter_is_normalised_and_checked_against_the_taxonomy() -> None:
    stored = device(
        {
            "platform": "fcm",
            "token": FCM_TOKEN,
            "lang": "EN, fr-CA",
            "category": ["Politics", "economy"],
            "region": "europe",
            "max_urgency": 5,
        }
    )
    assert stored.filter == Filter(("en", "fr-ca"), ("politics", "economy"), ("europe",), 5)
    assert stored.public() == {"id": "d1", "platform": "fcm", **stored.filter.to_params()}
    assert FCM_TOKEN not in str(stored.public())


def test_every_wrong_filter_field_is_named_at_once() -> None:
    errors = refused(
        {"platform": "fcm", "token": FCM_TOKEN, "lang": "en,not a tag", "category": "gossip", "region": "atlantis"}
    )
    assert [field for field, _ in errors] == ["lang", "category", "region"]
    assert "'gossip'" in errors[1][1] and "'atlantis'" in errors[2][1]


def test_a_web_push_device_with_a_wrong_filter_and_endpoint_gets_both_errors() -> None:
    errors = refused({"platform": "webpush", "subscription": subscription("http://x.example/"), "region": "atlantis"})
    assert [field for field, _ in errors] == ["region", "subscription.endpoint"]


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "apns", "token": APNS_TOKEN, "region": ["europe", "mena"], "max_urgency": 1},
        {"platform": "webpush", "subscription": subscription(), "lang": "ar"},
    ],
    ids=["apns", "webpush"],
)
def test_a_stored_record_reads_back_as_the_same_device(body: dict[str, Any]) -> None:
    stored = device(body)
    assert Device.from_record(stored.id, stored.to_record()) == stored
