"""Mobile and browser push: FCM, APNs and Web Push bridges, sent from arq jobs after the live fan-out.

The worker calls :func:`start` and :func:`stop` from its start-up and shut-down hooks and runs :func:`functions`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq.worker import Function, func
from redis.asyncio import Redis

from ticker_service.keys import PUSH_BATCH_JOB, PUSH_PLAN_JOB, PUSH_REINDEX_JOB, PUSH_TOPIC_JOB
from ticker_service.push.settings import PushSettings
from ticker_service.push.store import DeviceStore

from .bridges import build_bridges, check_credentials
from .jobs import enqueue_plan, plans_pushes, push_batch, push_plan, push_topic
from .pusher import Pusher
from .reindex import push_reindex, start_reindex

__all__ = ["check_credentials", "enqueue_plan", "functions", "plans_pushes", "start", "stop"]


def functions(timeout: float) -> list[Function]:
    """The push jobs, with the fan-out's timeout: arq re-runs a dead worker's jobs after the longest one + 10 s."""
    return [
        func(push_plan, name=PUSH_PLAN_JOB, timeout=timeout, max_tries=20),
        func(push_batch, name=PUSH_BATCH_JOB, timeout=timeout, max_tries=20),
        func(push_topic, name=PUSH_TOPIC_JOB, timeout=timeout, max_tries=20),
        func(push_reindex, name=PUSH_REINDEX_JOB, timeout=timeout, max_tries=20),
    ]


async def start(ctx: dict[str, Any], redis: Redis, settings: PushSettings, timeout: float) -> None:
    """Build the configured bridges (logging which are off) on ``redis``, the broker's connection."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per push request is too many
    bridges = build_bridges(settings, request_timeout=0.3 * timeout)  # per phase: connect, write, read
    semaphore = asyncio.Semaphore(settings.concurrency)
    # Sends start in the first 30% of the job's time and take at most 50% of it; whatever still runs at 85% is cut
    # off, leaving the rest of the time to queue the follow-up jobs.
    store = DeviceStore(redis)
    ctx["push"] = Pusher(settings, bridges, redis, store, semaphore, 0.3 * timeout, 0.5 * timeout, 0.85 * timeout)
    await start_reindex(ctx, store)


async def stop(ctx: dict[str, Any]) -> None:
    pusher: Pusher | None = ctx.pop("push", None)
    if pusher is not None:
        await pusher.aclose()
