"""Prometheus metrics, and their exposition at ``/metrics``.

With several hub processes on one host (``ticker hub --workers N``), prometheus-client's multiprocess mode keeps
each process's values in files under ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` of any process sums them; the
reader gauge counts only live processes (the files of a dead one are dropped when it is scraped).

The fan-out counts per event or per batch, never per reader: a metric update costs microseconds, and an event can
reach tens of thousands of readers.
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections import deque
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from .multiproc import alive, multiprocess_dir

MAX_LANGUAGE_LABELS = 64  # reader languages are user input: past this many distinct values they count as "other"
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})?$")

# Fan-out latency is publish (the event id's millisecond part, stamped by Redis or the memory broker at ingest)
# to written to the last matching reader's socket in this process.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

READERS = Gauge(
    "ticker_readers",
    "Connected readers, by transport and the language they asked for",
    ["transport", "language"],
    multiprocess_mode="livesum",
)
DELIVERED = Counter("ticker_events_delivered", "Events handed to readers (one per reader and event)")
FANOUT_SECONDS = Histogram(
    "ticker_fanout_latency_seconds", "From publish to written to the readers' sockets", buckets=LATENCY_BUCKETS
)
FANOUT_SLICES = Counter(
    "ticker_fanout_slices", "Times a fan-out paused its writes so the loop could serve other work (a POST, a flash)"
)
DISCONNECTS = Counter("ticker_reader_disconnects", "Readers closed by the hub, by reason", ["reason"])
REPLAYED = Counter("ticker_replayed_events", "Events replayed to resuming readers, by where they came from", ["source"])
INGEST_SECONDS = Histogram("ticker_ingest_latency_seconds", "Editor API requests, by method", ["method"])
INGEST_REQUESTS = Counter("ticker_ingest_requests", "Editor API requests, by method and status", ["method", "status"])
JOBS = Counter("ticker_fanout_jobs", "Fan-out jobs run by workers, by outcome", ["outcome"])
QUEUE_DEPTH = Gauge("ticker_queue_depth", "Fan-out jobs waiting in the arq queue", multiprocess_mode="livemostrecent")
REDIS_RECONNECTS = Counter("ticker_redis_reconnects", "Redis connections re-established, by component", ["component"])

# This process's recent fan-out latencies (monotonic time, seconds), for the operations page's percentiles.
RECENT_LATENCY: deque[tuple[float, float]] = deque(maxlen=4096)
_languages: set[str] = set()
_CLOSE_REASONS = frozenset({"slow", "shutdown", "history", "keepalive", "gone"})


def language_label(languages: tuple[str, ...]) -> str:
    """A bounded label for a reader's languages: ``any``, one tag, ``multi`` or ``other``."""
    if not languages:
        return "any"
    if len(languages) > 1:
        return "multi"
    tag = languages[0]
    if tag in _languages:
        return tag
    if not _LANGUAGE.match(tag) or len(_languages) >= MAX_LANGUAGE_LABELS:
        return "other"
    _languages.add(tag)
    return tag


def close_reason_label(reason: str) -> str:
    return reason if reason in _CLOSE_REASONS else "bad_message"


# Readers come and go by the thousand in a reconnect storm: their metric children are looked up once per kind.
_CENSUS_CACHE_LIMIT = 1024
_census: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, str], Any]] = {}
_disconnects: dict[str, Any] = {}


def reader_census(transport: str, languages: tuple[str, ...]) -> tuple[tuple[str, str], Any]:
    """The ``(transport, language)`` labels of a reader and its child of :data:`READERS`."""
    found = _census.get((transport, languages))
    if found is None:
        labels = (transport, language_label(languages))
        found = (labels, READERS.labels(*labels))
        if len(_census) < _CENSUS_CACHE_LIMIT:  # languages are user input: the cache stays bounded
            _census[(transport, languages)] = found
    return found


def count_disconnect(reason: str) -> None:
    label = close_reason_label(reason)
    child = _disconnects.get(label)
    if child is None:
        child = _disconnects[label] = DISCONNECTS.labels(label)
    child.inc()


def observe_fanout(event_ms: list[int], readers: int) -> None:
    """One flush of the hub: ``readers`` deliveries in all, and each event's age now that it is written."""
    if readers:
        DELIVERED.inc(readers)
    now_ms = time.time() * 1000
    now = time.monotonic()
    for ms in event_ms:
        seconds = max(0.0, now_ms - ms) / 1000
        FANOUT_SECONDS.observe(seconds)
        RECENT_LATENCY.append((now, seconds))


def _forget_dead_processes(directory: str) -> None:
    """Drop the live gauges of processes that are gone (uvicorn restarts a hub process that dies)."""
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = path.rsplit("_", 1)[-1].removesuffix(".db")
        if pid.isdigit() and not alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def serve(host: str, port: int) -> None:
    """``/metrics`` on its own port, in a thread (for ``ticker worker``, which has no HTTP server)."""
    registry = REGISTRY
    directory = multiprocess_dir()
    if directory is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)


def exposition() -> tuple[bytes, str]:
    """The text exposition: every process of this host in multiprocess mode, else this process."""
    directory = multiprocess_dir()
    if directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    _forget_dead_processes(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
