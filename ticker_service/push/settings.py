"""Push configuration (``TICKER_PUSH_*``), read once from the environment like :mod:`ticker_service.settings`.

Each bridge is off until its credentials are given: FCM needs a service-account key, APNs a ``.p8`` key with its key
id, team id and topic, Web Push a VAPID key pair (``ticker push vapid-keys`` makes one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..settings import client_js_dir

# Push services of the browsers we know; an endpoint on any other host is refused (the server must not be made to
# call arbitrary URLs). ``*.`` entries match any subdomain.
DEFAULT_WEBPUSH_HOSTS = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "web.push.apple.com",
    "*.notify.windows.com",
)


def _read(path: Path | None, inline: str | None) -> str | None:
    if inline:
        return inline
    return path.read_text() if path is not None else None


class PushSettings(BaseSettings):
    """Limits of the device registry and the credentials of the three bridges."""

    model_config = SettingsConfigDict(env_prefix="TICKER_PUSH_", extra="ignore", populate_by_name=True)

    webpush_hosts: Annotated[tuple[str, ...], NoDecode] = DEFAULT_WEBPUSH_HOSTS
    batch_size: int = Field(default=500, ge=1, le=5000, description="Devices per arq push job.")
    concurrency: int = Field(default=100, ge=1, description="Requests in flight per worker process.")
    parallel_batches: int = Field(default=2, ge=1, description="Batch jobs of one flash running at once.")
    plan_step_devices: int = Field(
        default=10_000, ge=1, le=100_000, description="Devices one step of a push plan adds, at least (one Redis call)."
    )
    max_attempts: int = Field(default=5, ge=1, description="Tries per device on 429/5xx/network errors.")
    max_retry_after_seconds: float = Field(default=300.0, gt=0, description="Longest Retry-After honoured.")
    breaking_ttl_seconds: int = Field(
        default=3600,
        ge=1,
        validation_alias=AliasChoices("TICKER_PUSH_BREAKING_TTL_SECONDS", "TICKER_PUSH_DEFAULT_TTL_SECONDS"),
        description="A notification expires this long after its version (sooner if the flash expires sooner).",
    )
    max_per_device_hour: int = Field(
        default=30, ge=1, description="Stories notified per device per hour, at most; urgency 1 always goes through."
    )
    marker_ttl_seconds: int = Field(default=7 * 86400, ge=60, description="How long (flash, device) sends are kept.")
    ca_file: Path | None = Field(default=None, description="Extra CA bundle to trust for push services (tests).")
    js_dir: Path = Field(
        default_factory=client_js_dir, description="Where push-sw.js and push.js are (the checkout's clients/js)."
    )

    fcm_credentials_file: Path | None = Field(default=None, description="Service-account JSON key file.")
    fcm_credentials: str | None = Field(default=None, description="The service-account JSON itself.")
    fcm_project: str | None = Field(default=None, description="Defaults to the key's project_id.")
    fcm_url: str = "https://fcm.googleapis.com"
    fcm_topics: bool = Field(
        default=False, description="One FCM send per topic <language>-<category> instead of one per FCM device."
    )

    apns_key_file: Path | None = Field(default=None, description="The .p8 signing key.")
    apns_key: str | None = Field(default=None, description="The .p8 key's PEM text itself.")
    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_topic: str | None = Field(default=None, description="The app's bundle id.")
    apns_url: str = Field(default="https://api.push.apple.com", description="api.sandbox.push.apple.com for dev.")

    vapid_private_key_file: Path | None = Field(default=None, description="PEM file from `ticker push vapid-keys`.")
    vapid_private_key: str | None = Field(default=None, description="The PEM text itself.")
    vapid_subject: str = Field(default="mailto:push@ticker.invalid", description="Contact for push services.")

    @field_validator("webpush_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    def fcm_key(self) -> str | None:
        return _read(self.fcm_credentials_file, self.fcm_credentials)

    def apns_pem(self) -> str | None:
        return _read(self.apns_key_file, self.apns_key)

    def vapid_pem(self) -> str | None:
        return _read(self.vapid_private_key_file, self.vapid_private_key)

    def webpush_host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for allowed in self.webpush_hosts:
            if allowed.startswith("*.") and host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                return True
            if host == allowed:
                return True
        return False
