"""The push jobs: plan a flash's device batches, then send each batch with bounded concurrency.

``fanout_job`` (live readers first) → ``push_plan`` (per event: the index gives the matching devices a slice of
shards at a time, appended to the plan; the job queues its continuation before its time is up, see ``plan.py``) →
``push_batch`` (``TICKER_PUSH_BATCH_SIZE`` devices each, run as ``parallel_batches`` chains: each batch queues the one
``parallel_batches`` further on when it is done, or waits for the plan to reach it).

**At most once per (event, device).** Right before its request goes out, a send claims the device in the event's set
``ticker:pushed:<flash>:<version>`` (``SADD``: only the first claim wins). A re-run job — arq re-runs a job whose
worker died — skips claimed devices, so no device is notified twice. A send that certainly did not reach the service
(no connection, GOAWAY) or was refused with 429/5xx gives its claim back and is retried in a deferred job; one cut off
in flight is not retried, so a worker killed mid-batch loses the notifications it had in flight, never duplicates.

Jobs keep within arq's timeout (the fan-out's, so a killed worker's jobs come back as soon as before): sends start
in the first 30 % of it, and the rest of the batch goes on in a continuation job.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections import Counter as Tally
from typing import Any

import httpx
from arq import Retry
from prometheus_client import Counter

from ticker_service.broker import Broker
from ticker_service.errors import REDIS_UNREACHABLE, BrokerUnavailable
from ticker_service.filters import Filter
from ticker_service.flashes import CANARY_CATEGORY, Document
from ticker_service.keys import (
    PUSH_BATCH_JOB,
    PUSH_BATCH_JOB_ID_PREFIX,
    PUSH_PLAN_JOB,
    PUSH_PLAN_PREFIX,
    PUSH_STATS,
    PUSH_TOPIC_JOB,
    WAKE_CHANNEL,
)
from ticker_service.push.device import Device
from ticker_service.settings import Settings
from ticker_service.stories import prefers

from .base import Bridge, Outcome
from .choice import Chooser, story_change
from .fcm import FcmBridge
from .payload import Alert, alert_for, fcm_topic
from .plan import DONE, Plan
from .pusher import Pusher

logger = logging.getLogger("ticker.push")

# Redis trouble in a job is retried later: the broker and the device store raise BrokerUnavailable, the job's own
# calls redis-py's errors. Unlike REDIS_DOWN, a bare OSError is not caught here (as before): it fails the job.
REDIS_TROUBLE: tuple[type[Exception], ...] = (BrokerUnavailable, *REDIS_UNREACHABLE)
# Per batch, never per send: label values are the three platforms and the outcomes named in base.py and here.
NOTIFICATIONS = Counter(
    "ticker_push_notifications", "Device notifications by platform and outcome", ["platform", "outcome"]
)
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def plans_pushes(ctx: dict[str, Any]) -> bool:
    """Whether this worker has push bridges, so a fanned-out event gets a push plan."""
    pusher: Pusher | None = ctx.get("push")
    return pusher is not None and bool(pusher.bridges)


async def enqueue_plan(ctx: dict[str, Any], flash_id: str, version: str) -> None:
    """After the live fan-out: plan the device pushes for this event, once (the job id dedupes re-runs)."""
    pusher: Pusher | None = ctx.get("push")
    if pusher is None or not pusher.bridges:
        return
    await ctx["redis"].enqueue_job(PUSH_PLAN_JOB, flash_id, version, _job_id=f"{PUSH_PLAN_JOB}:{flash_id}:{version}")
    await _wake(ctx)


async def _wake(ctx: dict[str, Any]) -> None:
    """Have workers poll now rather than after arq's poll delay (as ingest does for the fan-out job)."""
    await ctx["redis"].publish(WAKE_CHANNEL, b"1")


def public(doc: Document, settings: Settings) -> bool:
    """No private topic on ``doc``: devices hold no reader's grant, so a flash of a private category or region (or
    the canary's) is for granted readers only, never for a notification shade."""
    return Filter(private=frozenset(settings.private_topics) | {CANARY_CATEGORY}).may_see(doc)


async def push_plan(ctx: dict[str, Any], flash_id: str, version: str) -> int:
    """Plan the event's devices a slice of shards at a time, queueing the batches each slice makes ready; once the
    job's sending budget is spent, queue the plan's continuation (this job again, from the stored cursor)."""
    pusher: Pusher = ctx["push"]
    broker: Broker = ctx["broker"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    settings = pusher.settings
    try:
        event = await broker.event_for(flash_id, version)
        alert = alert_for(event, settings.breaking_ttl_seconds) if event is not None else None
        if event is None or alert is None or not public(event.flash, ctx["settings"]):
            return 0
        if settings.fcm_topics and "fcm" in pusher.bridges:  # the job id dedupes it on every plan job but the first
            await ctx["redis"].enqueue_job(
                PUSH_TOPIC_JOB, flash_id, version, _job_id=f"{PUSH_TOPIC_JOB}:{flash_id}:{version}"
            )
        plan = Plan(pusher.redis, flash_id, version, settings.batch_size)
        cursor, total = -1, 0
        try:
            # A slow Redis must not let arq cut the job off (a job past its timeout is not run again): stop first.
            async with asyncio.timeout_at(started + pusher.hard_stop):
                while cursor < DONE and (cursor == -1 or loop.time() < started + pusher.budget):
                    heads, ttl = settings.parallel_batches, alert.ttl + 3600
                    cursor, total = await plan.step(event.flash, heads, ttl, settings.plan_step_devices)
                    ready, beyond = await plan.waiting(total, cursor >= DONE)
                    for index in ready:
                        await _enqueue_batch(ctx, flash_id, version, index)
                    await plan.started(ready + beyond)
                    if ready:
                        await _wake(ctx)
        except TimeoutError:
            cursor = min(cursor, DONE - 1)  # maybe complete; the next job finds out from the stored cursor
        if cursor < DONE:  # cut off or out of time: the next plan job goes on from the stored cursor
            # Two plan jobs of one event at once (a re-run and its continuation) are safe: every step is atomic.
            job_id = f"{PUSH_PLAN_JOB}:{flash_id}:{version}:{cursor}:{secrets.token_hex(4)}"
            await ctx["redis"].enqueue_job(PUSH_PLAN_JOB, flash_id, version, _job_id=job_id)
            await _wake(ctx)
            return total
    except REDIS_TROUBLE as exc:
        raise Retry(defer=min(ctx["job_try"], 5)) from exc
    logger.info("flash %s v%s: %d devices in %d batches", flash_id, version, total, -(-total // settings.batch_size))
    return total


async def push_topic(ctx: dict[str, Any], flash_id: str, version: str) -> str:
    """With ``fcm_topics``: one FCM message to the topic ``<language>-<category>`` instead of one per FCM device."""
    pusher: Pusher = ctx["push"]
    bridge = pusher.bridges["fcm"]
    assert isinstance(bridge, FcmBridge)
    try:
        event = await ctx["broker"].event_for(flash_id, version)
        alert = alert_for(event, pusher.settings.breaking_ttl_seconds) if event is not None else None
        if alert is None:
            return "expired"
        topic = fcm_topic(alert)
        claim = Device(f"topic:{topic}", "fcm", topic, Filter())
        if await pusher.claim(alert, claim) != "ok":
            return "duplicate"
    except REDIS_TROUBLE as exc:
        raise Retry(defer=min(ctx["job_try"], 5)) from exc
    try:
        async with asyncio.timeout(pusher.send_timeout):
            outcome = await bridge.send_topic(topic, alert)
    except NOT_SENT as exc:
        outcome = Outcome("retry", None, str(exc))
    except (httpx.HTTPError, TimeoutError) as exc:
        outcome = Outcome("unknown", None, f"{type(exc).__name__}: {exc}")
    if outcome.kind == "retry":
        await pusher.release(alert, claim)
        raise Retry(defer=outcome.retry_after or min(2 ** ctx["job_try"], 60))
    await pusher.redis.hincrby(PUSH_STATS, f"fcm-topic:{outcome.kind}", 1)  # type: ignore[misc]
    NOTIFICATIONS.labels("fcm-topic", outcome.kind).inc()
    return f"{topic}: {outcome.kind} {outcome.detail}".strip()


async def _enqueue_batch(ctx: dict[str, Any], flash_id: str, version: str, index: int) -> None:
    job_id = f"{PUSH_BATCH_JOB_ID_PREFIX}{flash_id}:{version}:{index}"
    await ctx["redis"].enqueue_job(PUSH_BATCH_JOB, flash_id, version, index, None, 1, _job_id=job_id)


async def push_batch(
    ctx: dict[str, Any], flash_id: str, version: str, index: int, ids: list[str] | None, attempt: int
) -> dict[str, int]:
    """Send batch ``index`` of the plan (or the given ``ids``: a continuation or a retry), then chain the next."""
    pusher: Pusher = ctx["push"]
    broker: Broker = ctx["broker"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + pusher.budget
    size = pusher.settings.batch_size
    try:
        event = await broker.event_for(flash_id, version)
        alert = alert_for(event, pusher.settings.breaking_ttl_seconds) if event is not None else None
        if event is None or alert is None:
            return {}
        if ids is None:
            raw = await pusher.redis.lrange(
                f"{PUSH_PLAN_PREFIX}{flash_id}:{version}", index * size, (index + 1) * size - 1
            )  # type: ignore[misc]
            ids = [i.decode() for i in raw]
        devices = await pusher.store.load(ids)
        # Devices that prefer languages get one version of each story: which one, decided once per filter.
        change = None
        if any(d is not None and d.filter.matches(event.flash) and prefers(d.filter) for d in devices):
            change = await story_change(broker, event)
        chooser = Chooser(event, alert, change, pusher.settings.breaking_ttl_seconds)
    except REDIS_TROUBLE as exc:
        raise Retry(defer=min(ctx["job_try"], 5)) from exc

    counts: Tally[str] = Tally()
    later: list[str] = []
    retry: list[tuple[str, float | None]] = []
    settled: set[str] = set()  # devices whose send has an outcome, or that will not be sent
    claimed: set[str] = set()

    async def one(device: Device) -> None:
        await _one(device)
        settled.add(device.id)

    async def _one(device: Device) -> None:
        bridge = pusher.bridges.get(device.platform)
        if bridge is None:
            counts[f"{device.platform}:disabled"] += 1
            return
        if device.platform == "fcm" and pusher.settings.fcm_topics:
            counts["fcm:via_topic"] += 1
            return
        shown = chooser.alert_for(device.filter)
        if shown is None:
            counts[f"{device.platform}:other_version"] += 1  # shown a better version of the story
            return
        async with pusher.semaphore:
            if loop.time() > deadline:
                later.append(device.id)
                return
            claimed.add(device.id)  # before the claim: cut off during it, the device may be claimed but unsent
            claim = await pusher.claim(shown, device)
            if claim != "ok":
                counts[f"{device.platform}:{claim}"] += 1
                return
            outcome = await _send(bridge, device, shown, pusher.send_timeout)
            if outcome.kind == "retry":
                await pusher.release(shown, device)
                retry.append((device.id, outcome.retry_after))
            elif outcome.kind == "dead":
                await pusher.store.delete(device.id, (device.platform, device.address))
                logger.info("removed %s device %s: %s", device.platform, device.id, outcome.detail)
            elif outcome.kind in ("failed", "unknown"):
                logger.warning("%s send to %s failed: %s", device.platform, device.id, outcome.detail)
            counts[f"{device.platform}:{outcome.kind}"] += 1

    matching = [d for d in devices if d is not None and d.filter.matches(event.flash)]
    try:
        # The job stops its own sends before arq's timeout would; should arq cancel it anyway (a slow Redis), the
        # follow-up jobs are still queued below, so the batch chain never breaks.
        async with asyncio.timeout_at(started + pusher.hard_stop):
            results = await asyncio.gather(*(one(d) for d in matching), return_exceptions=True)
        for device, result in zip(matching, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("push send to %s raised: %r", device.id, result)
                counts[f"{device.platform}:error"] += 1
    except TimeoutError:
        pass
    finally:
        for device in matching:
            if device.id not in settled and device.id not in later:
                if device.id in claimed:
                    counts[f"{device.platform}:unknown"] += 1  # cut off in flight: maybe delivered
                else:
                    later.append(device.id)
        await _follow_up(ctx, pusher, flash_id, version, index, attempt, later, retry, counts)
    return dict(counts)


async def _follow_up(
    ctx: dict[str, Any],
    pusher: Pusher,
    flash_id: str,
    version: str,
    index: int,
    attempt: int,
    later: list[str],
    retry: list[tuple[str, float | None]],
    counts: Tally[str],
) -> None:
    """Queue the rest of the batch (or the chain's next batch), the retries, and add up the outcomes."""
    job_id = ctx.get("job_id") or f"{PUSH_BATCH_JOB_ID_PREFIX}{flash_id}:{version}:{index}"
    if later:
        await ctx["redis"].enqueue_job(PUSH_BATCH_JOB, flash_id, version, index, later, attempt, _job_id=f"{job_id}.c")
    elif index >= 0 and attempt == 1:
        # This batch is done: the chain goes on with the batch ``parallel_batches`` further, once it is planned.
        following = index + pusher.settings.parallel_batches
        plan = Plan(pusher.redis, flash_id, version, pusher.settings.batch_size)
        if await plan.frontier(following) == "go":
            await _enqueue_batch(ctx, flash_id, version, following)
    await _wake(ctx)
    await _retry_later(ctx, pusher, flash_id, version, attempt, retry, counts, job_id)
    if counts:
        for field, n in counts.items():
            NOTIFICATIONS.labels(*field.split(":", 1)).inc(n)
        async with pusher.redis.pipeline(transaction=False) as pipe:
            for field, n in counts.items():
                pipe.hincrby(PUSH_STATS, field, n)
            await pipe.execute()


async def _send(bridge: Bridge, device: Device, alert: Alert, timeout: float) -> Outcome:
    """One send, bounded by ``timeout``. Only a request that certainly was not processed is retried: one that was
    never sent (no connection) or that the server refused with GOAWAY. A timeout or a broken read may have been
    delivered, so it is counted ``unknown`` and not sent again."""
    try:
        async with asyncio.timeout(timeout):
            return await bridge.send(device, alert)
    except NOT_SENT as exc:
        return Outcome("retry", None, f"{type(exc).__name__}: {exc}")
    except httpx.RemoteProtocolError as exc:
        if "ConnectionTerminated" in str(exc):
            return Outcome("retry", None, f"GOAWAY: {exc}")
        return Outcome("unknown", None, f"{type(exc).__name__}: {exc}")
    except (httpx.HTTPError, TimeoutError) as exc:
        return Outcome("unknown", None, f"{type(exc).__name__}: {exc}")


async def _retry_later(
    ctx: dict[str, Any],
    pusher: Pusher,
    flash_id: str,
    version: str,
    attempt: int,
    retry: list[tuple[str, float | None]],
    counts: Tally[str],
    job_id: str,
) -> None:
    """Queue the devices to retry after Retry-After (or a jittered backoff), outside the batch chain."""
    if not retry:
        return
    if attempt >= pusher.settings.max_attempts:
        counts["all:gave_up"] += len(retry)
        logger.warning("flash %s v%s: gave up on %d devices after %d tries", flash_id, version, len(retry), attempt)
        return
    hinted = [after for _, after in retry if after is not None]
    delay = max(hinted) if hinted else min(2.0**attempt, 60.0) * (0.5 + random.random())
    delay = min(delay, pusher.settings.max_retry_after_seconds)
    ids = [device_id for device_id, _ in retry]
    await ctx["redis"].enqueue_job(
        PUSH_BATCH_JOB, flash_id, version, -1, ids, attempt + 1, _job_id=f"{job_id}.r", _defer_by=delay
    )
    await _wake(ctx)  # a worker then sets its timer for the retry, when due before its next poll
