"""The fan-out job: arq's wrapper around :func:`ticker_service.broker.fanout.fan_out`, then the push plan."""

from __future__ import annotations

from typing import Any

from arq import Retry

from ticker_service.broker.fanout import fan_out
from ticker_service.broker.release import release_due
from ticker_service.errors import BrokerUnavailable
from ticker_service.flashes import is_canary
from ticker_service.ops import metrics, reports

from . import push


def _outcome(outcome: str) -> None:
    metrics.JOBS.labels(outcome).inc()
    reports.JOB_COUNTS[outcome] += 1


async def fanout_job(ctx: dict[str, Any], flash_id: str, version: str) -> str | None:
    try:
        event_id, notify = await fan_out(ctx["broker"], flash_id, version)
        # A held flash (or its silent state) notifies no device, its release does; the canary's flash reaches its
        # own reader only, never a device.
        if notify and not is_canary(flash_id):
            await push.enqueue_plan(ctx, flash_id, version)
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
