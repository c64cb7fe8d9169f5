"""Time to screen: readers' display receipts, aggregated per flash version and surface as DDSketch bins.

A DDSketch (``ddsketch``) is a map from logarithmic bin to count, and two sketches merge by adding their counts. So
the bins themselves are what is stored: in Redis, one hash per flash (``ticker:reach:<id>``, fields
``<version>|<surface>|<bin>``) and one per minute for the operations page (``ticker:reach-min:<minute>``), each
hub adding its receipts with ``HINCRBY``. The merge across hubs is Redis' own atomic addition: no hub holds a sketch
another needs, a hub that dies loses at most its last unflushed second, and a read sees every hub's receipts.
Each hub batches: a receipt adds to a local table of bin deltas, flushed every ``FLUSH_SECONDS`` in one pipeline, so
Redis takes O(bins) writes a second, not O(receipts) (at 1 % accuracy, 1 ms to 1 h spans about 760 bins). A read
rebuilds the sketch from the hash and asks it for quantiles. Embedded, the same tables live in this process.

Receipts are sampled by the clients (1 in 10 readers by default): each carries its sampling rate, and its bin gets
the weight ``1/rate``, so ``readers`` estimates everyone who saw the flash while ``receipts`` counts what arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore
from prometheus_client import Histogram
from redis.asyncio import Redis

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..keys import REACH_MINUTE_PREFIX, REACH_PREFIX

logger = logging.getLogger("ticker.reach")

SURFACES = ("ws", "sse", "webpush", "fcm", "apns")
ACCURACY = 0.01  # quantiles within 1 % of the true value
MAPPING = LogarithmicMapping(ACCURACY)
MIN_SECONDS = 0.001  # a display "before" the publish by clock noise counts as 1 ms
FLUSH_SECONDS = 1.0
REACH_TTL_SECONDS = 7 * 86400  # a flash's figures stay this long after its last receipt
MINUTE_TTL_SECONDS = 3660
HOUR_MINUTES = 60
MAX_PENDING_FIELDS = 200_000  # Redis away: past this many unflushed fields, the oldest deltas are dropped

TIME_TO_SCREEN = Histogram(
    "ticker_time_to_screen_seconds",
    "From the editor's publish to a reader's screen, from sampled display receipts, by surface",
    ["surface"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
)


def bin_of(seconds: float) -> int:
    return int(MAPPING.key(max(seconds, MIN_SECONDS)))


def summary(bins: Mapping[int, int], receipts: int) -> dict[str, Any]:
    """``receipts``, the estimated ``readers`` (the weights) and p50/p90/p99 in seconds, from sketch bins."""
    store = DenseStore()
    for key, weight in bins.items():
        if weight > 0:
            store.add(key, weight)
    sketch = BaseDDSketch(MAPPING, store, DenseStore(), 0.0)
    out: dict[str, Any] = {"receipts": receipts, "readers": int(sketch.count)}
    if sketch.count:
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            value = sketch.get_quantile_value(q)
            if value is not None:
                out[name] = round(float(value), 3)
    return out


class ReachStore(Protocol):
    async def apply(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        """Add each key's field deltas (and keep the key for its TTL)."""
        ...

    async def read(self, keys: list[str]) -> list[dict[str, int]]: ...


def _ttl(key: str) -> int:
    return MINUTE_TTL_SECONDS if key.startswith(REACH_MINUTE_PREFIX) else REACH_TTL_SECONDS


class MemoryReachStore:
    def __init__(self) -> None:
        self._tables: dict[str, tuple[float, Counter[str]]] = {}

    async def apply(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        now = time.monotonic()
        if len(self._tables) > 10_000:
            self._tables = {k: v for k, v in self._tables.items() if v[0] > now}
        for key, fields in deltas.items():
            expires, table = self._tables.get(key, (0.0, Counter()))
            table.update(fields)
            self._tables[key] = (now + _ttl(key), table)

    async def read(self, keys: list[str]) -> list[dict[str, int]]:
        now = time.monotonic()
        out = []
        for key in keys:
            expires, table = self._tables.get(key, (0.0, Counter()))
            out.append(dict(table) if expires > now else {})
        return out


class RedisReachStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def apply(self, deltas: Mapping[str, Mapping[str, int]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, fields in deltas.items():
                    for field, value in fields.items():
                        pipe.hincrby(key, field, value)
                    pipe.expire(key, _ttl(key))
                await pipe.execute()
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def read(self, keys: list[str]) -> list[dict[str, int]]:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                raws = await pipe.execute()
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return [{k.decode(): int(v) for k, v in raw.items()} for raw in raws]


def _group(table: dict[str, int], depth: int) -> dict[tuple[str, ...], tuple[dict[int, int], int]]:
    """Fields ``<part>|…|<bin or n>`` grouped by their first ``depth`` parts: (bins, receipts)."""
    groups: dict[tuple[str, ...], tuple[dict[int, int], int]] = {}
    for field, value in table.items():
        parts = field.split("|")
        if len(parts) != depth + 1:
            continue
        head, last = tuple(parts[:depth]), parts[depth]
        bins, receipts = groups.get(head, ({}, 0))
        if last == "n":
            receipts += value
        else:
            with contextlib.suppress(ValueError):
                bins[int(last)] = bins.get(int(last), 0) + value
        groups[head] = (bins, receipts)
    return groups


def _merged(groups: Iterable[tuple[dict[int, int], int]]) -> tuple[dict[int, int], int]:
    bins: Counter[int] = Counter()
    receipts = 0
    for part, n in groups:
        bins.update(part)
        receipts += n
    return dict(bins), receipts


class Reach:
    """This process's side of the aggregation: ``add`` a receipt, ``flush`` the deltas, read the figures."""

    def __init__(self, store: ReachStore) -> None:
        self.store = store
        self._pending: dict[str, Counter[str]] = {}
        self._fields = 0

    @classmethod
    def for_redis(cls, redis: Redis | None) -> Reach:
        return cls(RedisReachStore(redis) if redis is not None else MemoryReachStore())

    def add(self, flash_id: str, version: str, surface: str, seconds: float, weight: int = 1) -> None:
        """Count one receipt: ``seconds`` from the version's publish to the reader's screen."""
        b = bin_of(seconds)
        minute = f"{REACH_MINUTE_PREFIX}{int(time.time() // 60)}"
        for key, prefix in ((REACH_PREFIX + flash_id, f"{version}|{surface}"), (minute, surface)):
            table = self._pending.get(key)
            if table is None:
                table = self._pending[key] = Counter()
            before = len(table)
            table[f"{prefix}|{b}"] += weight
            table[f"{prefix}|n"] += 1
            self._fields += len(table) - before
        TIME_TO_SCREEN.labels(surface).observe(seconds)

    async def flush(self) -> None:
        """Hand the pending deltas to the store; if it is unreachable they wait for the next flush (bounded)."""
        if not self._pending:
            return
        pending, self._pending, fields = self._pending, {}, self._fields
        self._fields = 0
        try:
            await self.store.apply(pending)
        except BrokerUnavailable:
            if fields + self._fields <= MAX_PENDING_FIELDS:
                for key, table in pending.items():
                    self._pending.setdefault(key, Counter()).update(table)
                self._fields += fields
            raise

    async def run(self) -> None:
        """Flush every ``FLUSH_SECONDS`` until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except BrokerUnavailable as exc:
                logger.debug("reach flush postponed: %s", exc)

    async def flash(self, flash_id: str) -> dict[str, Any]:
        """One flash's figures: all versions and surfaces together, then each version and surface."""
        await self._flush_quietly()
        (table,) = await self.store.read([REACH_PREFIX + flash_id])
        groups = _group(table, 2)
        rows = [
            {"version": version, "surface": surface, **summary(bins, n)}
            for (version, surface), (bins, n) in sorted(groups.items(), key=lambda g: (int(g[0][0]), g[0][1]))
        ]
        return {"flash": flash_id, **summary(*_merged(groups.values())), "versions": rows}

    async def last_hour(self) -> dict[str, Any]:
        """Every flash of the last hour, per surface and in all, for the operations page."""
        await self._flush_quietly()
        now = int(time.time() // 60)
        tables = await self.store.read([f"{REACH_MINUTE_PREFIX}{m}" for m in range(now - HOUR_MINUTES + 1, now + 1)])
        per_surface: dict[str, list[tuple[dict[int, int], int]]] = {}
        for table in tables:
            for (surface,), group in _group(table, 1).items():
                per_surface.setdefault(surface, []).append(group)
        surfaces = {s: summary(*_merged(groups)) for s, groups in sorted(per_surface.items())}
        every = _merged(g for groups in per_surface.values() for g in groups)
        return {"window_seconds": HOUR_MINUTES * 60, "all": summary(*every), "surfaces": surfaces}

    async def _flush_quietly(self) -> None:
        """Before a read: this hub's own receipts count at once (others' within a flush interval)."""
        with contextlib.suppress(BrokerUnavailable):
            await self.flush()
