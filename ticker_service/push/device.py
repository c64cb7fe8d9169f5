"""A device registration as a phone or browser sends it, validated strictly before anything is stored.

``POST /v1/devices`` body::

    {"platform": "fcm" | "apns" | "webpush",
     "token": "...",                                            # fcm, apns
     "subscription": {"endpoint": "https://...", "keys": {"p256dh": "...", "auth": "..."}},   # webpush
     "lang": "en,fr", "category": "politics", "region": ["europe"], "max_urgency": 2}

The filter fields mean what a reader's do (:mod:`ticker_service.filters`); ``max_urgency`` defaults to 2, so a
device is only woken for the most urgent flashes unless it asks for more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from ..filters import Filter
from ..flashes import BCP47
from ..settings import Settings
from .settings import PushSettings
from .vapid import b64url_decode

Platform = Literal["fcm", "apns", "webpush"]
PLATFORMS: tuple[Platform, ...] = ("fcm", "apns", "webpush")
DEFAULT_MAX_URGENCY = 2

_FCM_TOKEN = re.compile(r"^[A-Za-z0-9_:.\-]{16,4096}$")
_APNS_TOKEN = re.compile(r"^[0-9a-fA-F]{64,200}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
MAX_ENDPOINT = 1024


class Keys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p256dh: str = Field(max_length=128)
    auth: str = Field(max_length=64)

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        raw = _decode(value, "p256dh")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise ValueError("p256dh must be an uncompressed P-256 public key (65 bytes, base64url)") from None
        if len(raw) != 65:
            raise ValueError("p256dh must be an uncompressed P-256 public key (65 bytes, base64url)")
        return value.rstrip("=")

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        if len(_decode(value, "auth")) != 16:
            raise ValueError("auth must be 16 bytes, base64url")
        return value.rstrip("=")


class Subscription(BaseModel):
    """The browser's ``PushSubscription.toJSON()``."""

    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(max_length=MAX_ENDPOINT)
    expirationTime: int | None = None  # the browser's own field name
    keys: Keys


def _decode(value: str, field: str) -> bytes:
    if not _B64URL.match(value):
        raise ValueError(f"{field} must be base64url")
    try:
        return b64url_decode(value.rstrip("="))
    except ValueError:
        raise ValueError(f"{field} must be base64url") from None


FacetValue = str | list[str] | None


class _Registration(BaseModel):
    """What every platform's registration has: the filter of the flashes the device wants."""

    model_config = ConfigDict(extra="forbid")
    lang: FacetValue = Field(
        default=None,
        description="Languages: BCP 47 ranges, comma-separated or a list (en also matches en-GB); two or more are an "
        "order of preference: one notification per version of a story the device is shown, the best by that order.",
    )
    category: FacetValue = Field(default=None, description="Categories of the taxonomy, comma-separated or a list.")
    region: FacetValue = Field(default=None, description="Regions of the taxonomy, comma-separated or a list.")
    max_urgency: int = Field(default=DEFAULT_MAX_URGENCY, ge=1, le=9)

    @model_validator(mode="before")
    @classmethod
    def _one_address(cls, data: Any) -> Any:
        """Say which address a platform takes, rather than that a field is extra or missing."""
        if isinstance(data, dict):
            platform = data.get("platform")
            if platform == "webpush" and ("token" in data or "subscription" not in data):
                raise ValueError("a webpush device gives its subscription (endpoint and keys), not a token")
            if platform in ("fcm", "apns") and ("subscription" in data or "token" not in data):
                raise ValueError(f"an {platform} device gives its token, not a subscription")
        return data


class FcmDevice(_Registration):
    """A phone with Firebase Cloud Messaging: its registration token."""

    platform: Literal["fcm"]
    token: str = Field(max_length=4096, json_schema_extra={"pattern": _FCM_TOKEN.pattern})

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _FCM_TOKEN.match(value):
            raise ValueError("token is not an FCM registration token")
        return value


class ApnsDevice(_Registration):
    """An Apple device: its APNs device token (hex)."""

    platform: Literal["apns"]
    token: str = Field(max_length=200, json_schema_extra={"pattern": _APNS_TOKEN.pattern})

    @field_validator("token")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _APNS_TOKEN.match(value):
            raise ValueError("token is not an APNs device token (hex)")
        return value


class WebPushDevice(_Registration):
    """A browser: its ``PushSubscription``."""

    platform: Literal["webpush"]
    subscription: Subscription


Registration = FcmDevice | ApnsDevice | WebPushDevice


class DeviceIn(RootModel[Annotated[Registration, Field(discriminator="platform")]]):
    """The body of ``POST /v1/devices`` and ``PUT /v1/devices/{id}``: one schema per platform, told apart by
    ``platform``, so that the OpenAPI document spells out each platform's address (and a generated body can be a
    valid one)."""


@dataclass(frozen=True, slots=True)
class Device:
    """A stored registration: where to send, and which flashes it wants."""

    id: str
    platform: Platform
    address: str  # FCM/APNs token, or the Web Push endpoint
    filter: Filter
    p256dh: str = ""
    auth: str = ""

    def to_record(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "address": self.address,
            "p256dh": self.p256dh,
            "auth": self.auth,
            "filter": self.filter.to_params(),
        }

    @classmethod
    def from_record(cls, device_id: str, record: dict[str, Any]) -> Device:
        return cls(
            id=device_id,
            platform=record["platform"],
            address=record["address"],
            filter=Filter.parse(record["filter"]),
            p256dh=record.get("p256dh", ""),
            auth=record.get("auth", ""),
        )

    def public(self) -> dict[str, Any]:
        """What the API shows back: the filter and platform, never the secret."""
        return {"id": self.id, "platform": self.platform, **self.filter.to_params()}


def device_from_input(device_id: str, body: DeviceIn, settings: Settings, push: PushSettings) -> Device:
    """Check the filter against the taxonomy and the endpoint against the allowlist; ``ValueError(field, msg)``."""
    reg = body.root
    flt = Filter.parse({"lang": reg.lang, "category": reg.category, "region": reg.region})
    errors: list[tuple[str, str]] = []
    errors += [("lang", f"{v!r} is not a BCP 47 language range") for v in flt.languages if not BCP47.match(v)]
    errors += [("category", f"unknown category {v!r}") for v in flt.categories if v not in settings.categories]
    errors += [("region", f"unknown region {v!r}") for v in flt.regions if v not in settings.regions]
    flt = Filter(flt.languages, flt.categories, flt.regions, reg.max_urgency)
    if isinstance(reg, WebPushDevice):
        sub = reg.subscription
        parts = urlsplit(sub.endpoint)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
            errors.append(("subscription.endpoint", "must be an https URL without credentials"))
        elif not push.webpush_host_allowed(parts.hostname):
            errors.append(("subscription.endpoint", f"push service {parts.hostname!r} is not on the allowlist"))
        if errors:
            raise DeviceError(errors)
        return Device(device_id, "webpush", sub.endpoint, flt, sub.keys.p256dh, sub.keys.auth)
    if errors:
        raise DeviceError(errors)
    token = reg.token.lower() if reg.platform == "apns" else reg.token
    return Device(device_id, reg.platform, token, flt)


class DeviceError(ValueError):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors
