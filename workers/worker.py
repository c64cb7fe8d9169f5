"""The arq worker runtime: a worker that is woken by ingest instead of waiting for its next poll.

arq polls its queue every ``poll_delay``, which alone would put up to a poll between an editor's click and the
readers. The Lua script that records a flash publishes ``f`` on ``ticker:wake`` (once until a worker starts fanning
out), and :class:`WakeableWorker` then publishes every pending event and queues its push plan, with no arq job (the
job record queues is a safety net, due a second later and withdrawn when nothing is left pending); any other message
on the channel (a push job or an embargo's release queued) makes it poll arq's queue now, and each poll sets a timer
for a deferred job due before the next. The periodic poll (every 2 s by default) stays as the fallback.

Run with ``ticker worker`` (or ``arq workers.settings.WorkerSettings``, with ``REDIS_URL`` set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from arq.worker import Worker, func
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticker_service.broker.redis import RedisBroker
from ticker_service.errors import REDIS_DOWN
from ticker_service.keys import FANOUT_JOB, RELEASE_JOB, WAKE_CHANNEL
from ticker_service.ops import metrics, reports
from ticker_service.push.settings import PushSettings
from ticker_service.redis_conn import arq_redis, arq_settings, redis_client, watched_messages
from ticker_service.settings import Settings

from . import push
from .fanout import fan_out_woken, fanout_job, release_job

logger = logging.getLogger("ticker.worker")


async def startup(ctx: dict[str, Any]) -> None:
    """The worker's resources, from the settings :func:`worker_options` put in ``ctx`` (read once, when built)."""
    settings: Settings = ctx["settings"]
    broker = RedisBroker(settings)
    ctx["broker"] = broker
    await push.start(ctx, broker.redis, ctx["push_settings"], settings.fanout_job_timeout_seconds)


async def shutdown(ctx: dict[str, Any]) -> None:
    await push.stop(ctx)
    await ctx["broker"].close()


class WakeableWorker(Worker):
    """An arq worker that also polls whenever a message arrives on ``ticker:wake``."""

    def __init__(self, *args: Any, wake: Settings | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake = wake  # where to listen for ingest's wake-up; None: arq's polling only
        self._woken = asyncio.Event()  # poll arq's queue now
        self._fan_out = asyncio.Event()  # fan out the pending events now
        self._poll_lock = asyncio.Lock()

    async def _poll_iteration(self) -> None:
        async with self._poll_lock:
            await super()._poll_iteration()
        if self._wake is not None and self._pool is not None:
            await self._wake_at_next_due(self._pool)

    async def _wake_at_next_due(self, pool: Redis) -> None:
        """A deferred job (an embargo's release) due before the next poll: poll at its instant, not up to a poll
        delay after it."""
        now = time.time()
        soon = (now + self.poll_delay_s) * 1000
        due = await pool.zrangebyscore(self.queue_name, now * 1000, soon, start=0, num=1, withscores=True)
        if due:
            asyncio.get_running_loop().call_later(max(0.0, due[0][1] / 1000 - now), self._woken.set)

    async def main(self) -> None:
        tasks = [asyncio.create_task(self._report())]
        if self._wake is not None:
            tasks += [
                asyncio.create_task(self._listen_for_wake()),
                asyncio.create_task(self._poll_when_woken()),
                asyncio.create_task(self._fan_out_when_woken()),
            ]
        try:
            await super().main()
        finally:
            for task in tasks:
                task.cancel()
            if self._pool is not None:
                # A worker that stops leaves the operations page at once (one that dies, when its report expires).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reports.withdraw_report(self._pool, "worker"), 1.0)

    async def _report(self) -> None:
        """Tell the operations page this worker is alive, with its job counts (once arq's pool exists)."""
        while self._pool is None:
            await asyncio.sleep(0.1)
        await reports.report_forever(self._pool, "worker", reports.worker_report)

    async def _poll_when_woken(self) -> None:
        while True:
            await self._woken.wait()
            self._woken.clear()
            if self._pool is not None:
                try:
                    await self._poll_iteration()
                except Exception as exc:  # the regular poll loop reports Redis trouble; keep listening
                    logger.warning("woken poll failed: %s", exc)

    async def _fan_out_when_woken(self) -> None:
        """Each 'f' wake-up is one fan-out of everything pending: a flash costs the worker no arq job, and the
        flashes of a burst share one script call (record wakes the workers once until one starts fanning out)."""
        while "broker" not in self.ctx:  # startup() has not run yet
            await asyncio.sleep(0.05)
        while True:
            await self._fan_out.wait()
            self._fan_out.clear()
            try:
                await fan_out_woken(self.ctx)
            except Exception as exc:  # the safety job fans out what this left pending
                logger.warning("woken fan-out failed: %s", exc)

    async def _listen_for_wake(self) -> None:
        """Hold the wake-up subscription, watched like the hub's (a silent one fails within the Redis timeout)."""
        assert self._wake is not None
        delay = 0.1
        while True:
            client = redis_client(self._wake)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(WAKE_CHANNEL)
                timeout = self._wake.redis_timeout_seconds
                async with contextlib.aclosing(watched_messages(pubsub, timeout)) as messages:
                    async for message in messages:
                        if message["type"] == "subscribe":
                            delay = 0.1
                            self._woken.set()  # catch anything queued while we were not listening
                            self._fan_out.set()
                        elif message["type"] == "message":
                            (self._fan_out if message["data"] == b"f" else self._woken).set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("wake subscription lost (%s); reconnecting", exc)
                metrics.REDIS_RECONNECTS.labels("worker").inc()
            finally:
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:
                    pass
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


# Unless TICKER_WORKER_POLL_SECONDS says otherwise: a woken worker's poll is only the fallback (a safety job whose
# wake-up went unheard, a retry's deferral), and each poll costs the worker and Redis two commands; a worker that
# nothing wakes (TICKER_WORKER_WAKE=false, or arq's own CLI running a plain arq Worker: workers.settings) polls often.
WOKEN_POLL_SECONDS = 2.0
UNWOKEN_POLL_SECONDS = 0.05


def worker_options(settings: Settings, push_settings: PushSettings, *, woken: bool = True) -> dict[str, Any]:
    """What a worker of these settings runs, for both ways of starting one (``ticker worker`` and arq's CLI): the
    functions with their timeouts, the hooks, the polling. A job killed with its worker re-runs after its timeout
    + 10 s (arq's rule). ``woken``: ingest's wake-up reaches the worker, so it may poll slowly."""
    timeout = settings.fanout_job_timeout_seconds
    return {
        "functions": [
            func(fanout_job, name=FANOUT_JOB, timeout=timeout, max_tries=50),
            func(release_job, name=RELEASE_JOB, timeout=timeout, max_tries=50),
            *push.functions(timeout),
        ],
        "redis_settings": arq_settings(settings),
        # Its own pool rather than arq's, for the command timeout: a silent partition then fails a poll within
        # TICKER_REDIS_TIMEOUT_SECONDS (and the worker stops, or is started again), instead of waiting forever.
        "redis_pool": arq_redis(settings),
        "on_startup": startup,
        "on_shutdown": shutdown,
        "ctx": {"settings": settings, "push_settings": push_settings},
        "poll_delay": settings.worker_poll_seconds or (WOKEN_POLL_SECONDS if woken else UNWOKEN_POLL_SECONDS),
        "keep_result": 60,
        "health_check_interval": 10,
    }


def create_worker(settings: Settings, push_settings: PushSettings | None = None, **overrides: Any) -> WakeableWorker:
    """The worker ``ticker worker`` runs: :func:`worker_options`, more jobs at once, a graceful stop, the wake-up."""
    assert not settings.embedded, "the worker needs REDIS_URL or TICKER_REDIS_SENTINELS"
    options = worker_options(settings, push_settings or PushSettings(), woken=settings.worker_wake)
    options |= {
        "max_jobs": 50,
        # On SIGTERM, let running jobs finish (fan-out takes milliseconds); what is still running after this is
        # cancelled and goes back to the queue.
        "job_completion_wait": max(1, int(settings.shutdown_seconds)),
        "wake": settings if settings.worker_wake else None,
    }
    options.update(overrides)
    return WakeableWorker(**options)


# arq's worker also stops on any other error from Redis (READONLY from a replica after a failover, LOADING while
# it restarts): for the supervisor those mean "Redis went away" too, so it starts a new worker rather than dying.
_REDIS_TROUBLE: tuple[type[Exception], ...] = (*REDIS_DOWN, RedisError)


def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM; if Redis goes away under it (arq then stops), start a new one.

    arq's worker ends when its Redis connection fails; a push service must outlive a Redis restart.
    """
    push_settings = PushSettings()
    push.check_credentials(push_settings)  # before anything runs: a placeholder key stops the worker, named
    if settings.worker_metrics_port:
        metrics.serve(settings.worker_metrics_host, settings.worker_metrics_port)
    delay = 0.5
    while True:
        stopped: list[int] = []
        worker = create_worker(settings, push_settings)
        worker.on_stop = stopped.append
        try:
            worker.run()
        except _REDIS_TROUBLE as exc:
            logger.warning("worker lost Redis (%s); starting again", exc)
            metrics.REDIS_RECONNECTS.labels("worker").inc()
        else:
            delay = 0.5
        if stopped:
            return
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


async def supervise_worker(settings: Settings, push_settings: PushSettings | None = None) -> None:
    """The same, inside a running event loop (``ticker run`` with ``REDIS_URL``): until cancelled."""
    push_settings = push_settings or PushSettings()
    push.check_credentials(push_settings)
    delay = 0.5
    while True:
        worker = create_worker(settings, push_settings, handle_signals=False)
        try:
            await worker.async_run()
        except _REDIS_TROUBLE as exc:
            logger.warning("worker lost Redis (%s); starting again", exc)
            metrics.REDIS_RECONNECTS.labels("worker").inc()
        finally:
            with contextlib.suppress(*_REDIS_TROUBLE):
                await worker.close()
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)
