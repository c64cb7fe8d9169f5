"""The canary: with ``TICKER_CANARY_SECONDS`` set, a synthetic flash every N seconds, read back as a reader reads it.

Each round opens a WebSocket to the reader endpoint (this hub, or ``TICKER_CANARY_URL``: the load balancer, to test
what readers go through), records a flash the way ingest does (``broker.record``: history, state and the fan-out job,
so in Redis mode the worker's path too), waits for it on the socket, and then withdraws it. The time from the record
to the message is the full-path latency (``ticker_canary_latency_seconds``); a round that cannot publish, connect or
see its flash in time counts a failure by stage (``ticker_canary_failures_total``), and
``ticker_canary_last_success_timestamp_seconds`` is what to alert on. The Guardian runs an hourly dry-run breaking
alert for the same reason: a pipe can break where no flash has passed for hours.

The canary's flash never reaches an ordinary reader or device: its category (``ticker-canary``) is private whatever
the configuration says (``security/readers.py``), only a reader with the canary's secret is granted it, its id
(``canary-…``) keeps it out of the push plan (``workers/fanout.py``) and the receipts, and its withdrawal takes it
out of ``GET /v1/flashes``' scan. With several hubs, one per round runs it (a Redis lock), and all share the secret
(``SET NX`` in Redis), since the canary's connection may land on any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta

import orjson
from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ..broker import Broker
from ..flashes import (
    CANARY_CATEGORY,
    CANARY_ID_PREFIX,
    Document,
    FlashIn,
    new_document,
    new_flash_id,
    withdrawn_document,
)
from ..keys import CANARY_KEY, CANARY_LOCK
from ..security.readers import ReaderAuth
from ..settings import Settings

logger = logging.getLogger("ticker.canary")

LATENCY = Histogram(
    "ticker_canary_latency_seconds",
    "Canary flash: from the record (ingest's write) to the message on a reader's WebSocket",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FAILURES = Counter("ticker_canary_failures", "Canary rounds that failed, by stage", ["stage"])
RUNS = Counter("ticker_canary_runs", "Canary rounds run (one hub runs each round)")
LAST_SUCCESS = Gauge(
    "ticker_canary_last_success_timestamp_seconds",
    "Unix time of the last canary flash read back in time",
    multiprocess_mode="max",
)
STAGES = ("publish", "connect", "timeout", "withdraw")


def reader_url(settings: Settings) -> str:
    """The stream the canary reads: ``TICKER_CANARY_URL``, or this hub's own address."""
    if settings.canary_url:
        url = settings.canary_url.rstrip("/")
        url = "ws" + url[4:] if url.startswith("http") else url
        return url if url.endswith("/v1/stream") else url + "/v1/stream"
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{settings.port}/v1/stream"


def canary_document(settings: Settings, seconds: float) -> Document:
    """A flash no one but the canary sees: lowest urgency, private category, expiring soon in any case."""
    flash = FlashIn(
        headline="ticker canary",
        language="zxx",  # BCP 47: no linguistic content
        urgency=9,
        category=CANARY_CATEGORY,
        expires=datetime.now(UTC) + timedelta(seconds=max(60.0, 2 * seconds)),
    )
    doc = new_document(flash, settings)
    doc["uri"] = settings.uri_prefix + CANARY_ID_PREFIX + new_flash_id()
    doc["profile"] = "ticker-canary"
    return doc


class Canary:
    def __init__(self, settings: Settings, broker: Broker, readers: ReaderAuth, redis: Redis | None) -> None:
        self.settings = settings
        self.seconds = settings.canary_seconds
        self.timeout = max(5.0, min(self.seconds, 30.0))
        self.broker = broker
        self.readers = readers
        self.redis = redis
        self.url = reader_url(settings)
        self.me = f"{socket.gethostname()}:{os.getpid()}"
        for stage in STAGES:
            FAILURES.labels(stage)  # every stage shows, at 0, before its first failure

    async def run(self) -> None:
        """A round every ``TICKER_CANARY_SECONDS`` (a little jitter, so hubs started together do not collide)."""
        with contextlib.suppress(Exception):
            await self.share_key()  # before any hub's first round: its reader may land on this hub
        while True:
            await asyncio.sleep(self.seconds * random.uniform(0.9, 1.1))
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a round's trouble is counted in round(); never stop the loop
                logger.warning("canary round failed: %s", exc)

    async def share_key(self) -> str:
        """The canary reader's secret: one for every hub (Redis), set in this hub's reader auth."""
        key = self.readers.canary_key
        if self.redis is None:
            key = key or secrets.token_urlsafe(32)
        else:
            await self.redis.set(CANARY_KEY, secrets.token_urlsafe(32), nx=True)
            stored = await self.redis.get(CANARY_KEY)
            key = stored.decode() if stored is not None else key
        self.readers.canary_key = key
        return key or ""

    async def my_turn(self) -> bool:
        if self.redis is None:
            return True
        ttl_ms = max(100, int(self.seconds * 900))
        return bool(await self.redis.set(CANARY_LOCK, self.me, nx=True, px=ttl_ms))

    async def round(self) -> float | None:
        """One canary flash, published and read back; its latency in seconds, or None (failed or not our turn)."""
        try:
            key = await self.share_key()
            if not await self.my_turn():
                return None
            _, last = await self.broker.recent(1)
        except Exception as exc:
            FAILURES.labels("publish").inc()
            logger.warning("canary: the store is unreachable: %s", exc)
            return None
        RUNS.inc()
        doc = canary_document(self.settings, self.seconds)
        url = f"{self.url}?category={CANARY_CATEGORY}&last_event_id={last}"
        recorded = False
        try:
            try:
                ws = await connect(
                    url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=self.timeout
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                FAILURES.labels("connect").inc()
                logger.warning("canary: cannot open %s: %s", self.url, exc)
                return None
            async with ws:
                start = time.perf_counter()
                try:
                    await self.broker.record("flash", doc, expect_version=None)
                    recorded = True
                except Exception as exc:
                    FAILURES.labels("publish").inc()
                    logger.warning("canary: cannot publish: %s", exc)
                    return None
                if not await self._seen(ws, doc["uri"], start + self.timeout):
                    FAILURES.labels("timeout").inc()
                    logger.warning("canary: flash not read back within %.1f s", self.timeout)
                    return None
                seconds = time.perf_counter() - start
        finally:
            if recorded:
                await self._withdraw(doc)
        LATENCY.observe(seconds)
        LAST_SUCCESS.set(time.time())
        return seconds

    async def _seen(self, ws: ClientConnection, uri: str, deadline: float) -> bool:
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                async for message in ws:
                    event = orjson.loads(message)
                    if event.get("type") == "flash" and event.get("flash", {}).get("uri") == uri:
                        return True
        return False

    async def _withdraw(self, doc: Document) -> None:
        """Out of the current flashes at once (it also expires by itself, should this fail)."""
        try:
            await self.broker.record("withdraw", withdrawn_document(doc), expect_version=doc["version"])
        except Exception as exc:
            FAILURES.labels("withdraw").inc()
            logger.warning("canary: cannot withdraw %s: %s", doc["uri"], exc)
