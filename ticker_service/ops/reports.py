"""What the operations page shows, gathered across every hub process and worker.

Each hub process (and each worker) writes a small JSON report about itself to Redis every ``REPORT_SECONDS``, with a
TTL, so a process that dies drops out by itself: ``ticker:ops:hub:<host>:<pid>`` (and ``ticker:ops:worker:...``),
listed in the sets ``ticker:ops:hubs`` and ``ticker:ops:workers``. Any hub answers ``GET /v1/admin/stats`` from
those reports. In the embedded mode there is one process, which reports on itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from ..events import event_key
from ..flashes import flash_id_of, is_canary
from ..hub import Hub
from ..keys import ARQ_QUEUE, OPS_HUBS, OPS_REPORT_PREFIX, OPS_WORKERS
from . import metrics
from .reach import Reach

logger = logging.getLogger("ticker.ops")

REPORT_SECONDS = 2.0
REPORT_TTL_SECONDS = 10
LATENCY_WINDOW_SECONDS = 60.0
JOB_COUNTS: Counter[str] = Counter()  # this worker process's fan-out jobs by outcome


def process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def percentiles(values: list[float]) -> dict[str, float | int]:
    """p50/p90/p99 (nearest rank) in milliseconds, and the number of values."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {"count": len(ordered), "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99)}


def hub_report(hub: Hub) -> dict[str, Any]:
    """This hub process: its readers by transport and language, and its fan-out latency over the last minute."""
    cutoff = time.monotonic() - LATENCY_WINDOW_SECONDS
    transports: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for (transport, language), count in hub.census.items():
        if count > 0:
            transports[transport] += count
            languages[language] += count
    return {
        "id": process_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "readers": {"total": hub.count, "transports": dict(transports), "languages": dict(languages)},
        "latency": percentiles([s for t, s in metrics.RECENT_LATENCY if t >= cutoff]),
        "time": time.time(),
    }


def events_last_minute(hub: Hub) -> dict[str, int]:
    """Events of the last 60 s by type, from the hub's window of recent events (every hub sees every event)."""
    cutoff_ms = time.time() * 1000 - 60_000
    counts: Counter[str] = Counter()
    for event_id in reversed(hub._window):
        if event_key(event_id)[0] < cutoff_ms:
            break
        event = hub._window[event_id]
        if event.type != "reset" and is_canary(flash_id_of(event.flash)):
            continue  # the canary's flashes are not the newsroom's
        counts[event.type] += 1
    return dict(counts)


async def publish_report(redis: Redis, kind: str, report: dict[str, Any]) -> None:
    members = OPS_HUBS if kind == "hub" else OPS_WORKERS
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(f"{OPS_REPORT_PREFIX}{kind}:{report['id']}", orjson.dumps(report), ex=REPORT_TTL_SECONDS)
        pipe.sadd(members, report["id"])
        await pipe.execute()


async def withdraw_report(redis: Redis, kind: str) -> None:
    """This process stops: its report goes now rather than when it expires."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(f"{OPS_REPORT_PREFIX}{kind}:{process_id()}")
        pipe.srem(OPS_HUBS if kind == "hub" else OPS_WORKERS, process_id())
        await pipe.execute()


async def read_reports(redis: Redis, kind: str) -> list[dict[str, Any]]:
    """The live reports of one kind; ids whose report expired are dropped from the set."""
    members = OPS_HUBS if kind == "hub" else OPS_WORKERS
    ids = sorted(i.decode() for i in await redis.smembers(members))  # type: ignore[misc]
    if not ids:
        return []
    raws = await redis.mget([f"{OPS_REPORT_PREFIX}{kind}:{i}" for i in ids])
    gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
    if gone:
        await redis.srem(members, *gone)  # type: ignore[misc]
    return [orjson.loads(raw) for raw in raws if raw is not None]


async def report_forever(redis: Redis, kind: str, make: Callable[[], dict[str, Any]]) -> None:
    """Write ``make()``'s report every ``REPORT_SECONDS`` until cancelled; Redis trouble only skips a round."""
    while True:
        try:
            await publish_report(redis, kind, make())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("ops report skipped: %s", exc)
        await asyncio.sleep(REPORT_SECONDS)


def worker_report() -> dict[str, Any]:
    return {
        "id": process_id(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "jobs": dict(JOB_COUNTS),
        "time": time.time(),
    }


async def redis_health(redis: Redis) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        await redis.ping()
        ping_ms = round((time.perf_counter() - start) * 1000, 2)
        info = await redis.info()
        depth = await redis.zcard(ARQ_QUEUE)
    except Exception as exc:
        return {"status": "down", "error": type(exc).__name__}
    metrics.QUEUE_DEPTH.set(depth)
    return {
        "status": "ok",
        "ping_ms": ping_ms,
        "role": info.get("role"),
        "version": info.get("redis_version"),
        "connected_clients": info.get("connected_clients"),
        "used_memory": info.get("used_memory_human"),
        "queue_depth": depth,
    }


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    transports: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    for report in reports:
        transports.update(report["readers"]["transports"])
        languages.update(report["readers"]["languages"])
    return {
        "total": sum(r["readers"]["total"] for r in reports),
        "transports": dict(transports),
        "languages": dict(languages),
    }


def _worst_latency(reports: list[dict[str, Any]]) -> dict[str, float]:
    """Percentiles do not add up across hubs; each hub sees every event, so the slowest hub's are shown."""
    worst: dict[str, float] = {}
    for report in reports:
        for key in ("p50", "p90", "p99"):
            if key in report["latency"]:
                worst[key] = max(worst.get(key, 0.0), report["latency"][key])
    return worst


async def stats(hub: Hub, redis: Redis | None, reach: Reach | None = None) -> dict[str, Any]:
    """Everything the operations page shows, for all hubs and workers (``redis`` is None in the embedded mode)."""
    events = events_last_minute(hub)
    body: dict[str, Any] = {
        "time": time.time(),
        "flashes_per_minute": events.get("flash", 0),
        "events_last_minute": events,
    }
    if reach is not None:
        with contextlib.suppress(Exception):  # Redis down: the page shows the rest
            body["time_to_screen"] = await reach.last_hour()
    if redis is not None:
        body["mode"] = "redis"
        body["redis"] = await redis_health(redis)
        hubs: list[dict[str, Any]] = []
        workers: list[dict[str, Any]] = []
        if body["redis"]["status"] == "ok":
            with contextlib.suppress(Exception):
                hubs = await read_reports(redis, "hub")
                workers = await read_reports(redis, "worker")
        own = hub_report(hub)
        if not any(h["id"] == own["id"] for h in hubs):
            hubs.append(own)  # this hub's first report may not be written yet, or Redis is down
    else:
        body["mode"] = "embedded"
        body["redis"] = {"status": "embedded"}
        hubs = [hub_report(hub)]
        workers = []
    now = time.time()
    for report in [*hubs, *workers]:
        report["age_seconds"] = round(max(0.0, now - report.pop("time", now)), 1)
    body["hubs"] = hubs
    body["workers"] = workers
    body["readers"] = _merge(hubs)
    body["latency"] = _worst_latency(hubs)
    return body
