"""The upgrade from the unsharded device index: a worker moves an older release's devices into the index shards.

Until they are moved they are still found (the plan's first slice reads the unsharded sets), so the move is not
urgent; it runs as a chain of jobs of a slice each, every device moved in one atomic step, and is logged when it
starts and when it is done. Two runs at once (two workers started together) are harmless: a moved device is moved
no further.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import Retry

from ticker_service.errors import REDIS_UNREACHABLE, BrokerUnavailable
from ticker_service.keys import PUSH_REINDEX_JOB
from ticker_service.push.store import DeviceStore

logger = logging.getLogger("ticker.push")

REDIS_TROUBLE: tuple[type[Exception], ...] = (BrokerUnavailable, *REDIS_UNREACHABLE)

SLICE = 2000  # devices per script call: a few ms of Redis


async def start_reindex(ctx: dict[str, Any], store: DeviceStore) -> None:
    """At the worker's start-up: if devices of an older release are left unsharded, queue their move."""
    try:
        _, left = await store.reindex_unsharded(0)
        if left:
            logger.warning(
                "%d devices are in the unsharded index of an older release: moving them to the index shards "
                "(they are found meanwhile)",
                left,
            )
            await ctx["redis"].enqueue_job(PUSH_REINDEX_JOB, 0, _job_id=f"{PUSH_REINDEX_JOB}:0")
    except REDIS_TROUBLE as exc:
        logger.warning("could not check for unsharded devices (%s); the next start will", exc)


async def push_reindex(ctx: dict[str, Any], run: int) -> int:
    """Move slices of unsharded devices for a third of the job's time, then queue the next run; return how many
    are left."""
    store: DeviceStore = ctx["push"].store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx["push"].budget
    moved = 0
    try:
        while True:
            n, left = await store.reindex_unsharded(SLICE)
            moved += n
            if not left:
                logger.warning("the unsharded device index is empty: every device is in its shard")
                return 0
            if loop.time() > deadline:
                break
    except REDIS_TROUBLE as exc:
        raise Retry(defer=min(ctx["job_try"], 5)) from exc
    logger.info("moved %d devices to the index shards, %d left", moved, left)
    await ctx["redis"].enqueue_job(PUSH_REINDEX_JOB, run + 1, _job_id=f"{PUSH_REINDEX_JOB}:{run + 1}")
    return left
