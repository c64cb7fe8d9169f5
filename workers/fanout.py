"""The fan-out job: every event waiting to be fanned out, published in one script, then their push plans."""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from ticker_service.broker.redis import RedisBroker
from ticker_service.broker.release import release_due
from ticker_service.errors import BrokerUnavailable
from ticker_service.flashes import is_canary
from ticker_service.ops import metrics, reports

from . import push

logger = logging.getLogger("ticker.fanout")


def _outcome(outcome: str) -> None:
    metrics.JOBS.labels(outcome).inc()
    reports.JOB_COUNTS[outcome] += 1


async def fan_out_all(ctx: dict[str, Any], own: tuple[str, str] | None = None) -> tuple[str | None, int]:
    """Publish every event waiting to be fanned out (and ``own``, a job's flash id and version), queue each one's push
    plan, then mark them done; return ``own``'s event id and how many events there were.

    Stopped half-way (a worker killed, Redis gone), the events are still pending: the next call, or the safety job
    that record queued, does them again. At least once: hubs drop event ids they already delivered, a push plan's job
    id dedupes it, and each device is claimed once per event.
    """
    broker: RedisBroker = ctx["broker"]
    plans = push.plans_pushes(ctx)  # without push bridges, publishing is all: one script call does it all
    found: str | None = None
    count = 0
    while True:  # batches of 500 until none is left (each batch leaves the pending set before the next is read)
        batch = await broker.fan_out_pending(own, finish=not plans)
        for event in batch.events:
            if own == (event.flash_id, event.version):
                found = event.event_id
            if event.event_id is None:
                # Trimmed from the history before it was fanned out (or never recorded): nothing left to deliver.
                logger.warning("no event for flash %s version %s; skipping", event.flash_id, event.version)
            # A held flash (or its silent state) notifies no device, its release does; the canary's flash reaches
            # its own reader only, never a device.
            elif plans and event.type != "hold" and not is_canary(event.flash_id):
                await push.enqueue_plan(ctx, event.flash_id, event.version)
        count += len(batch.events)
        if plans:
            await broker.fanned_out(batch.events)
        own = None
        if not batch.more:
            break
    return found, count


async def fan_out_woken(ctx: dict[str, Any]) -> None:
    """What a worker does when ingest wakes it ('f' on the wake channel): fan out whatever is pending."""
    try:
        _, count = await fan_out_all(ctx)
    except BrokerUnavailable as exc:  # the safety job, or the next wake-up, does it again
        logger.warning("woken fan-out failed: %s", exc)
        _outcome("retry")
        return
    except Exception:
        _outcome("error")
        raise
    if count:  # a wake-up that found nothing pending (another worker took it) is no fan-out
        _outcome("ok")


async def fanout_job(ctx: dict[str, Any], flash_id: str, version: str) -> str | None:
    """arq's fan-out job: queued by record as the safety net for its event (and every other one still pending)."""
    try:
        event_id, _ = await fan_out_all(ctx, (flash_id, version))
    except BrokerUnavailable as exc:
        _outcome("retry")
        raise Retry(defer=min(ctx["job_try"], 5)) from exc
    except Exception:
        _outcome("error")
        raise
    _outcome("ok" if event_id else "skipped")
    return event_id


async def release_job(ctx: dict[str, Any], flash_id: str, version: str) -> str | None:
    """At a flash's embargo (the job is deferred to it): record it as an ordinary flash, whose fan-out follows."""
    try:
        event = await release_due(ctx["broker"], flash_id, version)
    except BrokerUnavailable as exc:
        raise Retry(defer=min(ctx["job_try"], 5)) from exc
    return event.event_id if event else None  # the release's own fan-out job is what the job metrics count
