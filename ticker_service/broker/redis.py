"""Redis broker: a Redis Stream is the history, pub/sub carries live events, arq runs the fan-out.

This module is the store side (idempotency claims, ``record``, the flashes and the history); the live side
(publishing, the subscription and its catch-up) is :mod:`.redis_live`, and the Lua scripts with their KEYS/ARGV
tables are :mod:`.redis_scripts`. The keys are listed in :mod:`ticker_service.keys`.

``record`` is one Lua script, so the stream entry, the flash's state, the idempotency result and the arq job are
written together or not at all; the script then wakes the workers over pub/sub so a job does not wait for arq's
next poll. Event ids are ``<epoch>-<stream id>``; the stream itself holds plain stream ids.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from arq.constants import expires_extra_ms
from arq.jobs import serialize_job

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..events import Event, EventType, make_event_id, new_epoch, split_event_id
from ..flashes import Document, flash_id_of
from ..keys import (
    ARQ_IN_PROGRESS_PREFIX,
    ARQ_JOB_PREFIX,
    ARQ_QUEUE,
    AUDIT_STREAM,
    EVENTS_STREAM,
    FANOUT_JOB,
    FANOUT_PENDING,
    FANOUT_QUEUED,
    FANOUT_WOKEN,
    FLASH_INDEX,
    FLASH_PREFIX,
    HISTORY_EPOCH,
    IDEMPOTENCY_PREFIX,
    LIVE_CHANNEL,
    PUBLISHED_CURSOR,
    RECENT_FLASHES,
    RELEASE_JOB,
    WAKE_CHANNEL,
    WITHHELD_PREFIX,
)
from ..redis_conn import redis_client
from ..redis_pipeline import ScriptPipeline
from ..settings import Settings
from .base import Claim, ClaimLost, HistoryGap, LiveHandler, VersionConflict, Withheld
from .redis_live import RedisLive, event_from_entry
from .redis_scripts import (
    DISCARD,
    FANNED,
    FANOUT,
    RECENT,
    RECORD,
    RELEASE,
    REPLAY,
    STAGE,
    DiscardArgs,
    DiscardKeys,
    FannedArgs,
    FannedKeys,
    FanoutArgs,
    FanoutKeys,
    RecentArgs,
    RecentKeys,
    RecordArgs,
    RecordKeys,
    ReleaseArgs,
    ReleaseKeys,
    ReplayArgs,
    ReplayKeys,
    StageArgs,
    StageKeys,
    positional,
)

logger = logging.getLogger("ticker.broker")

PENDING_TTL_MS = 10_000  # a claim outlives any request (Redis timeouts are 3 s), not a crashed one for long
# The fan-out job that record queues is a safety net: a woken worker fans the event out at once, and withdraws the
# job when nothing is left pending. Only if no worker did (none woken, one died mid-way) does the job run, this late.
# Without the wake-up (TICKER_WORKER_WAKE=false: workers that only poll, such as arq's own CLI) it is due at once.
SAFETY_JOB_DELAY_MS = 1000
JOB_TTL_MS = expires_extra_ms  # the fan-out job's key lives as long as arq's enqueue_job would keep it (a day)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FannedOut:
    """One event a fan-out job published: ``event_id`` None when it is gone (trimmed, or never recorded)."""

    flash_id: str
    version: str
    event_id: str | None
    type: str


@dataclass(frozen=True, slots=True)
class FanoutBatch:
    sent: int  # messages published on the live channel
    events: list[FannedOut]  # the pending events it covered, and the job's own
    more: bool  # more events were pending than one batch takes


def _pending(fingerprint: str, token: str) -> bytes:
    """The value of a claimed, not yet recorded idempotency key."""
    return f"P:{fingerprint}:{token}".encode()


def _idempotency(idempotency: tuple[str, str, str] | None, doc: Document) -> tuple[str, bytes, bytes]:
    """For a write of ``doc``: its idempotency key, the result the key will hold, and the claim it must still hold
    (``(scope, fingerprint, claim token)``; none: a key the scripts leave alone)."""
    if idempotency is None:
        return IDEMPOTENCY_PREFIX, b"", b""
    scope, fingerprint, token = idempotency
    return IDEMPOTENCY_PREFIX + scope, orjson.dumps({"fp": fingerprint, "doc": doc}), _pending(fingerprint, token)


def _refused(result: list[Any], idem_key: str, flash_id: str) -> None:
    """Raise what a write script's refusal means: the claim went stale, or the flash changed meanwhile."""
    if result[0] == b"stale":
        raise ClaimLost(idem_key)
    if result[0] == b"conflict":
        raise VersionConflict(flash_id)


class RedisBroker:
    records_audit = True  # the audit stream is in the same Redis: record's script appends the entry

    def __init__(self, settings: Settings) -> None:
        assert not settings.embedded, "RedisBroker needs REDIS_URL or TICKER_REDIS_SENTINELS"
        self.settings = settings
        self.redis = redis_client(settings)  # commands time out after TICKER_REDIS_TIMEOUT_SECONDS
        # The ingest and fan-out scripts of concurrent callers, one write a turn.
        self.scripts = ScriptPipeline(self.redis)
        self._record = self.redis.register_script(RECORD)
        self._recent = self.redis.register_script(RECENT)
        self._release = self.redis.register_script(RELEASE)
        self._replay = self.redis.register_script(REPLAY)
        self._stage = self.redis.register_script(STAGE)
        self._discard = self.redis.register_script(DISCARD)
        self._fanout = self.redis.register_script(FANOUT)
        self._fanned = self.redis.register_script(FANNED)
        self.live = RedisLive(settings, self.redis, self._call)

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except REDIS_DOWN as exc:
            logger.warning("redis unavailable: %s", exc)
            raise BrokerUnavailable(str(exc)) from exc

    @property
    def _subscribed(self) -> asyncio.Event:
        """Set while the live side is subscribed (tests wait on it)."""
        return self.live.subscribed

    async def start(self) -> None:
        self.live.start()

    async def close(self) -> None:
        await self.live.close()
        await self.redis.aclose()

    async def ready(self) -> bool:
        if not self.live.receiving():
            return False
        try:
            return bool(await self.redis.ping())
        except REDIS_DOWN:
            return False

    # -- ingest side -------------------------------------------------------------------------------------------
    async def claim(self, scope: str, fingerprint: str) -> Claim:
        key = IDEMPOTENCY_PREFIX + scope

        async def op() -> Claim:
            for _ in range(3):
                token = secrets.token_hex(8)
                if await self.redis.set(key, _pending(fingerprint, token), nx=True, px=PENDING_TTL_MS):
                    return Claim("new", token=token)
                raw = await self.redis.get(key)
                if raw is None:
                    continue  # expired between SET NX and GET: claim again
                if raw.startswith(b"P:"):
                    return Claim("in_flight" if raw[2:].split(b":")[0].decode() == fingerprint else "mismatch")
                done = orjson.loads(raw)
                if done["fp"] != fingerprint:
                    return Claim("mismatch")
                return Claim("done", done["doc"])
            raise BrokerUnavailable("idempotency key kept expiring")

        return await self._call(op)

    async def release(self, scope: str, token: str) -> None:
        try:
            keys, args = ReleaseKeys(idempotency=IDEMPOTENCY_PREFIX + scope), ReleaseArgs(token_suffix=":" + token)
            await self._release(keys=positional(keys), args=positional(args))
        except REDIS_DOWN:
            pass  # the pending claim expires by itself after PENDING_TTL_MS

    async def record(
        self,
        type: EventType,
        doc: Document,
        *,
        expect_version: str | None,
        idempotency: tuple[str, str, str] | None = None,
        audit: bytes = b"",
    ) -> Event:
        flash_id = flash_id_of(doc)
        version = doc["version"]
        doc_json = orjson.dumps(doc)
        now_ms = int(time.time() * 1000)
        job_id = f"{FANOUT_JOB}:{flash_id}:{version}"
        job = serialize_job(FANOUT_JOB, (flash_id, version), {}, None, now_ms)
        idem_key, idem_value, held = _idempotency(idempotency, doc)
        keys = RecordKeys(
            events=EVENTS_STREAM,
            flash=FLASH_PREFIX + flash_id,
            recent=RECENT_FLASHES,
            flash_index=FLASH_INDEX,
            idempotency=idem_key,
            job=ARQ_JOB_PREFIX + job_id,
            queue=ARQ_QUEUE,
            published=PUBLISHED_CURSOR,
            epoch=HISTORY_EPOCH,
            scheduled=WITHHELD_PREFIX + "scheduled",
            pending=WITHHELD_PREFIX + "pending",
            fanout_pending=FANOUT_PENDING,
            fanout_queued=FANOUT_QUEUED,
            fanout_woken=FANOUT_WOKEN,
            audit=AUDIT_STREAM,
        )
        args = RecordArgs(
            type=type,
            flash_id=flash_id,
            doc=doc_json,
            version=version,
            expect_version=expect_version or "",
            created_ms=now_ms,
            history_max_events=self.settings.history_max_events,
            idempotency_result=idem_value,
            idempotency_ttl_ms=self.settings.idempotency_ttl_seconds * 1000,
            job=job,
            job_ttl_ms=JOB_TTL_MS,
            job_id=job_id,
            job_due_ms=now_ms + (SAFETY_JOB_DELAY_MS if self.settings.worker_wake else 0),
            listed="1" if doc.get("pubStatus") == "usable" else "0",
            recent_max_flashes=self.settings.recent_max_flashes,
            wake_channel=WAKE_CHANNEL,
            flash_prefix=FLASH_PREFIX,
            new_epoch=new_epoch(),
            trim_before_id=f"{now_ms - self.settings.history_max_age_seconds * 1000}-0",
            held_claim=held,
            job_prefix=ARQ_JOB_PREFIX,
            in_progress_prefix=ARQ_IN_PROGRESS_PREFIX,
            audit_entry=audit,
            audit_max_entries=self.settings.audit_max_entries,
        )
        result = await self._call(lambda: self.scripts.run(self._record, keys, args))
        _refused(result, idem_key, flash_id)
        return Event(make_event_id(result[2].decode(), result[1].decode()), type, doc)

    async def stage(
        self,
        doc: Document,
        *,
        expect_version: str | None,
        withheld: Withheld | None,
        idempotency: tuple[str, str, str] | None = None,
    ) -> None:
        flash_id = flash_id_of(doc)
        version = doc["version"]
        now_ms = int(time.time() * 1000)
        idem_key, idem_value, held = _idempotency(idempotency, doc)
        # The embargo's release is an arq job deferred to its instant: it survives hubs and workers restarting.
        job_id = f"{RELEASE_JOB}:{flash_id}:{version}"
        job, job_due = b"", 0
        if withheld is not None and withheld.status == "scheduled":
            job_due = withheld.due_ms
            job = serialize_job(RELEASE_JOB, (flash_id, version), {}, None, now_ms)
        keys = StageKeys(
            flash=FLASH_PREFIX + flash_id,
            idempotency=idem_key,
            scheduled=WITHHELD_PREFIX + "scheduled",
            pending=WITHHELD_PREFIX + "pending",
            job=ARQ_JOB_PREFIX + job_id,
            queue=ARQ_QUEUE,
        )
        args = StageArgs(
            flash_id=flash_id,
            doc=orjson.dumps(doc),
            version=version,
            expect_version=expect_version or "",
            withheld=orjson.dumps(withheld.to_json()) if withheld is not None else b"",
            status=withheld.status if withheld is not None else "",
            score=(withheld.due_ms or now_ms) if withheld is not None else 0,
            idempotency_result=idem_value,
            idempotency_ttl_ms=self.settings.idempotency_ttl_seconds * 1000,
            held_claim=held,
            job=job,
            job_ttl_ms=max(0, job_due - now_ms) + JOB_TTL_MS,
            job_id=job_id,
            job_due_ms=job_due,
            wake_channel=WAKE_CHANNEL,
        )
        result = await self._call(lambda: self._stage(keys=positional(keys), args=positional(args)))
        _refused(result, idem_key, flash_id)

    async def discard(self, flash_id: str, expect_version: str) -> None:
        keys = DiscardKeys(
            flash=FLASH_PREFIX + flash_id, scheduled=WITHHELD_PREFIX + "scheduled", pending=WITHHELD_PREFIX + "pending"
        )
        args = DiscardArgs(flash_id=flash_id, expect_version=expect_version)
        result = await self._call(lambda: self._discard(keys=positional(keys), args=positional(args)))
        if result[0] == b"conflict":
            raise VersionConflict(flash_id)

    async def withheld(self, flash_id: str) -> Withheld | None:
        raw = await self._call(lambda: self.redis.hget(FLASH_PREFIX + flash_id, "w"))
        return None if raw is None else Withheld.from_json(orjson.loads(raw))

    async def count_withheld(self) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(WITHHELD_PREFIX + "scheduled")
            pipe.zcard(WITHHELD_PREFIX + "pending")
            counts = await self._call(pipe.execute)
        return int(sum(counts))

    async def list_withheld(self, status: str, limit: int) -> list[tuple[Document, Withheld]]:
        ids = await self._call(lambda: self.redis.zrange(WITHHELD_PREFIX + status, 0, limit - 1))
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for flash_id in ids:
                pipe.hmget(FLASH_PREFIX + flash_id.decode(), ["doc", "w"])
            rows = await self._call(pipe.execute)
        return [
            (orjson.loads(doc), Withheld.from_json(orjson.loads(why)))
            for doc, why in rows
            if doc is not None and why is not None
        ]

    async def get_flash(self, flash_id: str) -> Document | None:
        raw = await self._call(lambda: self.redis.hget(FLASH_PREFIX + flash_id, "doc"))
        return None if raw is None else orjson.loads(raw)

    async def recent(self, scan: int) -> tuple[list[Document], str]:
        keys = RecentKeys(recent=RECENT_FLASHES, events=EVENTS_STREAM, epoch=HISTORY_EPOCH)
        args = RecentArgs(limit=scan, flash_prefix=FLASH_PREFIX, new_epoch=new_epoch())
        last, docs, epoch = await self._call(lambda: self._recent(keys=positional(keys), args=positional(args)))
        return [orjson.loads(raw) for raw in docs if raw], make_event_id(epoch.decode(), last.decode())

    async def events_after(self, event_id: str, limit: int) -> list[Event]:
        epoch, position = split_event_id(event_id)
        keys = ReplayKeys(events=EVENTS_STREAM, epoch=HISTORY_EPOCH)
        args = ReplayArgs(epoch=epoch, after=position, limit=limit)
        result = await self._call(lambda: self._replay(keys=positional(keys), args=positional(args)))
        if result[0] == b"gap":
            raise HistoryGap(event_id)
        return [event_from_entry(epoch, entry_id, dict(zip(f[::2], f[1::2], strict=True))) for entry_id, f in result[1]]

    async def event_for(self, flash_id: str, version: str) -> Event | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(FLASH_PREFIX + flash_id, f"ev:{version}")
            pipe.get(HISTORY_EPOCH)
            position, epoch = await self._call(pipe.execute)
        if position is None or epoch is None:
            return None
        entries = await self._call(lambda: self.redis.xrange(EVENTS_STREAM, min=position, max=position, count=1))
        return event_from_entry(epoch.decode(), *entries[0]) if entries else None

    async def fan_out_pending(
        self, own: tuple[str, str] | None = None, *, finish: bool = False, limit: int = 500
    ) -> FanoutBatch:
        """Publish the oldest pending events (and ``own``, the flash id and version of a job, pending or not) with
        all the events before them, in one script; they stay pending until :meth:`fanned_out` says so, or at once
        with ``finish`` (nothing else is to be done for them: no push plans).

        A woken worker calls this for every burst of wake-ups, so a burst of flashes costs one call, not one each.
        """
        keys = FanoutKeys(
            fanout_pending=FANOUT_PENDING,
            events=EVENTS_STREAM,
            published=PUBLISHED_CURSOR,
            epoch=HISTORY_EPOCH,
            fanout_woken=FANOUT_WOKEN,
            fanout_queued=FANOUT_QUEUED,
            queue=ARQ_QUEUE,
        )
        args = FanoutArgs(
            own=f"{own[0]}:{own[1]}" if own else "",
            limit=limit,
            flash_prefix=FLASH_PREFIX,
            live_channel=LIVE_CHANNEL,
            finish="1" if finish else "",
            job_prefix=ARQ_JOB_PREFIX,
            in_progress_prefix=ARQ_IN_PROGRESS_PREFIX,
        )
        # Through the pipeline, as ingest's scripts: a lone flash's fan-out is one packed write, with none of
        # redis-py's pool, Retry and argument packing per call (~0.1 ms of a woken worker's CPU per flash).
        sent, epoch, found, taken = await self._call(lambda: self.scripts.run(self._fanout, keys, args))
        events: list[FannedOut] = []
        for raw, position, kind in found:
            fid, _, ver = raw.decode().rpartition(":")
            event_id = make_event_id(epoch.decode(), position.decode()) if position else None
            events.append(FannedOut(fid, ver, event_id, kind.decode()))
        return FanoutBatch(int(sent), events, more=int(taken) >= limit)

    async def fanned_out(self, events: list[FannedOut]) -> None:
        """These events' fan-out is complete (published, push plans queued): they leave the pending set, and with
        none left the fan-out job queued as a safety net (not yet started) is withdrawn."""
        if not events:
            return
        keys = FannedKeys(fanout_pending=FANOUT_PENDING, fanout_queued=FANOUT_QUEUED, queue=ARQ_QUEUE)
        args = FannedArgs(
            members=" ".join(f"{e.flash_id}:{e.version}" for e in events),
            job_prefix=ARQ_JOB_PREFIX,
            in_progress_prefix=ARQ_IN_PROGRESS_PREFIX,
        )
        await self._call(lambda: self.scripts.run(self._fanned, keys, args))

    # -- live side: see redis_live.py --------------------------------------------------------------------------
    async def publish(self, event: Event) -> int:
        return await self.live.publish(event)

    def subscribe(self, handler: LiveHandler) -> None:
        self.live.subscribe(handler)

    def on_history_lost(self, callback: Callable[[], None]) -> None:
        self.live.on_history_lost(callback)
