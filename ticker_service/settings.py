"""Configuration, read once from the environment (``TICKER_*`` and ``REDIS_URL``) and passed down."""

from __future__ import annotations

import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

STATIC = Path(str(resources.files("ticker_service") / "static"))  # the pages and their scripts, in the package


@cache
def client_js_dir() -> Path:
    """Where the JavaScript client is: copied into the package by an image build, else the source tree's
    ``clients/js`` (a checkout, or the editable install that ``scripts/setup`` makes)."""
    packaged = STATIC / "js"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "clients" / "js"


DEFAULT_CATEGORIES = (
    "politics",
    "economy",
    "sports",
    "arts-culture",
    "health",
    "technology",
    "environment",
    "miscellaneous",
)
DEFAULT_REGIONS = (
    "africa",
    "asia",
    "asia-pacific",
    "europe",
    "latin-america",
    "mena",
    "palestine",
    "us-canada",
)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "ticker"


class Settings(BaseSettings):
    """Every knob of the service. Zero-config gives the embedded, in-memory mode."""

    model_config = SettingsConfigDict(env_prefix="TICKER_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "TICKER_REDIS_URL"),
        description="Redis to run the distributed path on; unset means the embedded in-memory mode.",
    )
    redis_sentinels: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Redis Sentinel addresses, host:port,...; the master is asked of them."
    )
    redis_sentinel_master: str = Field(default="mymaster", description="The name the sentinels monitor the master as.")
    redis_timeout_seconds: float = Field(
        default=3.0,
        gt=0,
        description="A Redis connection silent this long is dead: each command's timeout, and the bound within which "
        "a hub or worker notices a silent partition of its subscription (docs/deployment.md).",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default_factory=_default_data_dir, description="Embedded mode: where token hashes live.")
    public_url: str | None = Field(default=None, description="Base URL printed in hints, e.g. https://ticker.example")

    categories: Annotated[tuple[str, ...], NoDecode] = DEFAULT_CATEGORIES
    regions: Annotated[tuple[str, ...], NoDecode] = DEFAULT_REGIONS
    uri_prefix: str = Field(default="urn:ticker:flash:", description="A flash's ninjs uri is this prefix + its id.")

    max_body_bytes: int = Field(default=16 * 1024, ge=256)
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    history_max_events: int = Field(default=10_000, ge=100, description="Events kept for resume (Redis stream MAXLEN).")
    history_max_age_seconds: int = Field(default=48 * 3600, ge=60, description="Events older than this are trimmed.")
    recent_max_flashes: int = Field(default=10_000, ge=100, description="Flashes whose state is kept for GET/PATCH.")
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=3600)
    queue_max_messages: int = Field(default=1_000, ge=1, description="Per-reader outgoing queue before disconnect.")
    write_buffer_limit_bytes: int = Field(
        default=256 * 1024, ge=4096, description="Unsent bytes a reader's socket may hold before it is cut off."
    )
    socket_send_buffer_bytes: int = Field(
        default=0, ge=0, description="SO_SNDBUF for readers' sockets; 0 keeps the kernel's (auto-tuned) default."
    )
    fanout_coalesce_seconds: float = Field(
        default=0.002,
        ge=0,
        le=0.1,
        description="Under a burst, events this close to the last flush go out together, one write per reader.",
    )
    fanout_slice_seconds: float = Field(
        default=0.001,
        ge=0,
        le=1,
        description="A fan-out writes this long at most before the hub serves other work (POSTs, the next flash); "
        "0: in one go.",
    )
    replay_max_events: int = Field(default=10_000, ge=1, description="Most events replayed to one resuming reader.")
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)

    worker_poll_seconds: float | None = Field(
        default=None,
        gt=0,
        description="arq poll interval; unset: 2 s for a worker that ingest wakes (the poll is only its fallback), "
        "0.05 s for one that only polls.",
    )
    worker_wake: bool = Field(default=True, description="Workers listen for ingest's wake-up (off: poll only).")
    worker_metrics_port: int = Field(default=0, ge=0, description="`ticker worker` serves /metrics here (0: off).")
    worker_metrics_host: str = Field(default="127.0.0.1", description="Address of the worker's /metrics.")
    fanout_job_timeout_seconds: float = Field(default=3.0, gt=0)
    shutdown_seconds: float = Field(default=10.0, gt=0, description="Graceful shutdown bound for hubs and workers.")
    malloc_trim_seconds: float = Field(
        default=60.0, ge=0, description="How often a hub gives freed heap memory back to the system (0: never)."
    )
    log_level: str = "info"

    # -- security (docs/security.md) -----------------------------------------------------------------------------
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Browser origins allowed on WebSocket and CORS; empty: the service's own origin."
    )
    publish_rate_per_minute: int = Field(default=1200, ge=1, description="Writes per editor token per minute.")
    device_writes_per_minute: int = Field(
        default=120, ge=1, description="Device registrations, changes and deletions per client address a minute."
    )
    failed_auth_per_minute: int = Field(default=60, ge=1, description="Refused editor tokens per address a minute.")
    max_connections: int = Field(default=50_000, ge=1, description="Open client connections per hub process.")
    max_connections_per_ip: int = Field(
        default=25_000,
        ge=1,
        description="Open connections per client address: half a hub, so that a carrier's NAT (or a proxy) "
        "fits with room to spare and one host cannot fill a hub (docs/security.md).",
    )
    new_connections_per_second: int = Field(
        default=2_000, ge=1, description="Accepted connections per second, sustained (a reconnect storm's pace)."
    )
    new_connections_burst: int = Field(
        default=20_000, ge=1, description="Accepted connections at once, before the per-second pace applies."
    )
    handshake_timeout_seconds: float = Field(default=10.0, gt=0, description="Time to send a request's headers.")
    idle_timeout_seconds: float = Field(default=5.0, gt=0, description="Idle HTTP keep-alive connections close.")
    audit_max_entries: int = Field(default=10_000, ge=10, description="Audit entries kept (newest).")
    receipts_per_minute: int = Field(
        default=120, ge=1, description="Display receipts (POST /v1/receipts) per client address a minute."
    )
    private_topics: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Categories or regions whose flashes only readers with a JWT granting them get."
    )
    jwt_algorithm: str = Field(default="RS256", description="The one algorithm reader JWTs may use.")
    jwt_key: str | None = Field(default=None, description="Verification key: a PEM public key, or an HMAC secret.")
    jwt_audience: str = "ticker"
    jwt_issuer: str | None = None
    jwt_topics_claim: str = "topics"

    # -- time-to-screen canary (ops/canary.py) ------------------------------------------------------------------
    canary_seconds: float = Field(
        default=0, ge=0, description="Publish a private canary flash this often and read it back (0: no canary)."
    )
    canary_url: str | None = Field(
        default=None, description="Where the canary reads as a reader would, ws(s)://…/v1/stream; default: this hub."
    )

    # -- the desk (docs/newsroom.md) -------------------------------------------------------------------------------
    flash_approval: bool = Field(
        default=False, description="A FLASH (urgency 1) waits for a second editor's approval (scope approve)."
    )
    withheld_max_flashes: int = Field(
        default=1_000, ge=1, description="Flashes that may wait at once (embargo, approval): 409 beyond."
    )

    @field_validator("categories", "regions", "private_topics", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Exact origins only: a wildcard with credentialed CORS would let any site read the API as its reader."""
        if isinstance(value, str):
            value = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
        for origin in value if isinstance(value, tuple | list) else ():
            if not re.fullmatch(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:\d{1,5})?", str(origin)):
                raise ValueError(
                    f"TICKER_ALLOWED_ORIGINS takes exact origins like https://news.example, not {origin!r}"
                )
        return value

    @model_validator(mode="after")
    def _reader_tokens_complete(self) -> Settings:
        """Private topics need a way to verify readers' tokens: say so at start, not at the first reader."""
        if self.jwt_algorithm.lower() == "none":
            raise ValueError("TICKER_JWT_ALGORITHM must be a signing algorithm, not 'none'")
        if self.private_topics and not (self.jwt_key and self.jwt_issuer):
            raise ValueError("TICKER_PRIVATE_TOPICS needs TICKER_JWT_KEY and TICKER_JWT_ISSUER")
        return self

    @property
    def embedded(self) -> bool:
        return not self.redis_url and not self.redis_sentinels
