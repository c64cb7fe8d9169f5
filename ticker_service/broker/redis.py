"""Redis broker: a Redis Stream is the history, pub/sub carries live events, arq runs the fan-out.

``record`` is one Lua script, so the stream entry, the flash's state, the idempotency result and the arq job are
written together or not at all; the script then wakes the workers over pub/sub so a job does not wait for arq's
next poll. Keys (all under ``ticker:``, plus arq's own):

* ``ticker:events`` stream, fields ``t`` (type), ``f`` (flash id), ``v`` (version), ``d`` (ninjs JSON)
* ``ticker:flash:<id>`` hash: ``doc``, ``version``, ``ev:<version>`` (event id of each version)
* ``ticker:recent`` zset of not-withdrawn flash ids and ``ticker:index`` zset of all kept flash ids, by creation
* ``ticker:idem:<scope>`` the idempotency record; ``ticker:live`` and ``ticker:wake`` pub/sub channels
* ``ticker:published`` the id of the last event published on ``ticker:live`` (keeps live delivery in order)
* ``ticker:epoch`` the history's epoch: created with the history, so it changes when Redis loses the history

Event ids are ``<epoch>-<stream id>``; the stream itself holds plain stream ids.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from arq.jobs import serialize_job
from redis.asyncio import Redis

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..events import Event, EventType, event_key, make_event_id, new_epoch, split_event_id
from ..flashes import Document, flash_id_of
from ..keys import (
    ARQ_JOB_PREFIX,
    ARQ_QUEUE,
    EVENTS_STREAM,
    FANOUT_JOB,
    FLASH_INDEX,
    FLASH_PREFIX,
    HISTORY_EPOCH,
    IDEMPOTENCY_PREFIX,
    LIVE_CHANNEL,
    PUBLISHED_CURSOR,
    RECENT_FLASHES,
    WAKE_CHANNEL,
)
from ..ops import metrics
from ..redis_conn import redis_client
from ..settings import Settings
from .base import Claim, ClaimLost, HistoryGap, LiveHandler, VersionConflict

logger = logging.getLogger("ticker.broker")

PENDING_TTL_MS = 10_000  # a claim outlives any request (Redis timeouts are 3 s), not a crashed one for long

_RECORD = """
if ARGV[8] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[20] then return {'stale'} end
local cur = redis.call('HGET', KEYS[2], 'version')
if ARGV[5] == '' then
  if cur then return {'conflict'} end
elseif cur ~= ARGV[5] then
  return {'conflict'}
end
if redis.call('EXISTS', KEYS[8]) == 0 then
  -- No publish cursor yet: everything before this event counts as published.
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  local previous = '0-0'
  if #top > 0 then previous = top[1][1] end
  redis.call('SET', KEYS[8], previous)
end
local epoch = redis.call('GET', KEYS[9])
if not epoch then
  epoch = ARGV[18]
  redis.call('SET', KEYS[9], epoch)
end
local eid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[7], '*',
  't', ARGV[1], 'f', ARGV[2], 'v', ARGV[4], 'd', ARGV[3])
redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[19])
redis.call('HSET', KEYS[2], 'doc', ARGV[3], 'version', ARGV[4], 'ev:' .. ARGV[4], eid)
if ARGV[5] == '' then
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
end
if ARGV[14] == '1' then redis.call('ZREM', KEYS[3], ARGV[2]) end
if ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[9]) end
redis.call('SET', KEYS[6], ARGV[10], 'PX', ARGV[11])
redis.call('ZADD', KEYS[7], ARGV[13], ARGV[12])
local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[15])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[4], 0, extra - 1)
  for _, id in ipairs(old) do
    redis.call('DEL', ARGV[17] .. id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
  end
end
redis.call('PUBLISH', ARGV[16], '1')
return {'ok', eid, epoch}
"""

_RECENT = """
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local docs = {}
for i, id in ipairs(ids) do docs[i] = redis.call('HGET', ARGV[2] .. id, 'doc') or '' end
local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last = '0-0'
if #top > 0 then last = top[1][1] end
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[3], epoch)
end
return {last, docs, epoch}
"""

# Publish, in stream order, every entry after the ``published`` cursor up to the target id, then move the cursor.
# One script, so concurrent or repeated fan-out jobs can neither reorder nor repeat events on the live channel.
_PUBLISH = """
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local target = ARGV[1]
local epoch = redis.call('GET', KEYS[3]) or ''
local cursor = redis.call('GET', KEYS[2])
if cursor and not after(target, cursor) then return 0 end
local start = target
if cursor then start = '(' .. cursor end
local sent = 0
while true do
  local entries = redis.call('XRANGE', KEYS[1], start, target, 'COUNT', 500)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    local f = {}
    for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
    local id = epoch .. '-' .. entry[1]
    local message = '{"type":"' .. f['t'] .. '","event_id":"' .. id .. '","flash":' .. f['d'] .. '}'
    redis.call('PUBLISH', ARGV[2], message)
    sent = sent + 1
    start = '(' .. entry[1]
  end
end
redis.call('SET', KEYS[2], target)
return sent
"""

# The events after a position, unless the reader is from another epoch or the history was trimmed past it.
_REPLAY = """
local epoch = redis.call('GET', KEYS[2])
if not epoch or epoch ~= ARGV[1] then return {'gap'} end
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  -- Entries were trimmed, and the reader is from before the first one kept: what it missed may be gone.
  if fields['entries-added'] > fields['length'] then
    local fm, fs = string.match(fields['recorded-first-entry-id'], '^(%d+)-(%d+)$')
    local rm, rs = string.match(ARGV[2], '^(%d+)-(%d+)$')
    fm, fs, rm, rs = tonumber(fm), tonumber(fs), tonumber(rm), tonumber(rs)
    if rm < fm or (rm == fm and rs < fs) then return {'gap'} end
  end
end
return {'ok', redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[3])}
"""

_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'P:' and string.sub(v, -#ARGV[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

T = TypeVar("T")


def _pending(fingerprint: str, token: str) -> bytes:
    """The value of a claimed, not yet recorded idempotency key."""
    return f"P:{fingerprint}:{token}".encode()


def _event(epoch: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Event:
    position = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Event(make_event_id(epoch, position), fields[b"t"].decode(), orjson.loads(fields[b"d"]))  # type: ignore[arg-type]


class RedisBroker:
    def __init__(self, settings: Settings) -> None:
        assert not settings.embedded, "RedisBroker needs REDIS_URL or TICKER_REDIS_SENTINELS"
        self.settings = settings
        self.redis = redis_client(settings, socket_timeout=3, socket_connect_timeout=2)
        self._record = self.redis.register_script(_RECORD)
        self._recent = self.redis.register_script(_RECENT)
        self._release = self.redis.register_script(_RELEASE)
        self._publish = self.redis.register_script(_PUBLISH)
        self._replay = self.redis.register_script(_REPLAY)
        self._handlers: list[LiveHandler] = []
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._position: str | None = None  # the last event handed to the handlers, live or by catch-up
        self._lost_callbacks: list[Callable[[], None]] = []

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except REDIS_DOWN as exc:
            logger.warning("redis unavailable: %s", exc)
            raise BrokerUnavailable(str(exc)) from exc

    async def start(self) -> None:
        if self._handlers and self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="ticker-redis-listener")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except asyncio.CancelledError:
                pass
        await self.redis.aclose()

    async def ready(self) -> bool:
        if self._handlers and not self._subscribed.is_set():
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
            await self._release(keys=[IDEMPOTENCY_PREFIX + scope], args=[":" + token])
        except REDIS_DOWN:
            pass  # the pending claim expires by itself after PENDING_TTL_MS

    async def record(
        self,
        type: EventType,
        doc: Document,
        *,
        expect_version: str | None,
        idempotency: tuple[str, str, str] | None = None,
    ) -> Event:
        flash_id = flash_id_of(doc)
        version = doc["version"]
        doc_json = orjson.dumps(doc)
        now_ms = int(time.time() * 1000)
        job_id = f"{FANOUT_JOB}:{flash_id}:{version}"
        job = serialize_job(FANOUT_JOB, (flash_id, version), {}, None, now_ms)
        idem_key, idem_value, held = IDEMPOTENCY_PREFIX, b"", b""
        if idempotency is not None:
            scope, fingerprint, token = idempotency
            idem_key = IDEMPOTENCY_PREFIX + scope
            idem_value = orjson.dumps({"fp": fingerprint, "doc": doc})
            held = _pending(fingerprint, token)
        keys = [
            EVENTS_STREAM,
            FLASH_PREFIX + flash_id,
            RECENT_FLASHES,
            FLASH_INDEX,
            idem_key,
            ARQ_JOB_PREFIX + job_id,
            ARQ_QUEUE,
            PUBLISHED_CURSOR,
            HISTORY_EPOCH,
        ]
        args: list[Any] = [
            type,
            flash_id,
            doc_json,
            version,
            expect_version or "",
            now_ms,
            self.settings.history_max_events,
            idem_value,
            self.settings.idempotency_ttl_seconds * 1000,
            job,
            86_400_000,
            job_id,
            now_ms,
            "1" if doc.get("pubStatus") == "canceled" else "0",
            self.settings.recent_max_flashes,
            WAKE_CHANNEL,
            FLASH_PREFIX,
            new_epoch(),
            f"{now_ms - self.settings.history_max_age_seconds * 1000}-0",
            held,
        ]
        result = await self._call(lambda: self._record(keys=keys, args=args))
        if result[0] == b"stale":
            raise ClaimLost(idem_key)
        if result[0] == b"conflict":
            raise VersionConflict(flash_id)
        return Event(make_event_id(result[2].decode(), result[1].decode()), type, doc)

    async def get_flash(self, flash_id: str) -> Document | None:
        raw = await self._call(lambda: self.redis.hget(FLASH_PREFIX + flash_id, "doc"))
        return None if raw is None else orjson.loads(raw)

    async def recent(self, scan: int) -> tuple[list[Document], str]:
        last, docs, epoch = await self._call(
            lambda: self._recent(
                keys=[RECENT_FLASHES, EVENTS_STREAM, HISTORY_EPOCH], args=[scan, FLASH_PREFIX, new_epoch()]
            )
        )
        return [orjson.loads(raw) for raw in docs if raw], make_event_id(epoch.decode(), last.decode())

    async def events_after(self, event_id: str, limit: int) -> list[Event]:
        epoch, position = split_event_id(event_id)
        result = await self._call(
            lambda: self._replay(keys=[EVENTS_STREAM, HISTORY_EPOCH], args=[epoch, position, limit])
        )
        if result[0] == b"gap":
            raise HistoryGap(event_id)
        return [_event(epoch, entry_id, dict(zip(f[::2], f[1::2], strict=True))) for entry_id, f in result[1]]

    async def event_for(self, flash_id: str, version: str) -> Event | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(FLASH_PREFIX + flash_id, f"ev:{version}")
            pipe.get(HISTORY_EPOCH)
            position, epoch = await self._call(pipe.execute)
        if position is None or epoch is None:
            return None
        entries = await self._call(lambda: self.redis.xrange(EVENTS_STREAM, min=position, max=position, count=1))
        return _event(epoch.decode(), *entries[0]) if entries else None

    # -- live side ---------------------------------------------------------------------------------------------
    async def publish(self, event: Event) -> int:
        position = split_event_id(event.event_id)[1]
        sent = await self._call(
            lambda: self._publish(keys=[EVENTS_STREAM, PUBLISHED_CURSOR, HISTORY_EPOCH], args=[position, LIVE_CHANNEL])
        )
        return int(sent)

    def subscribe(self, handler: LiveHandler) -> None:
        self._handlers.append(handler)

    def on_history_lost(self, callback: Callable[[], None]) -> None:
        self._lost_callbacks.append(callback)

    async def _listen(self) -> None:
        """Hold the pub/sub subscription; reconnect with jittered backoff when Redis goes away."""
        delay = 0.1
        while True:
            client = redis_client(self.settings, socket_connect_timeout=2)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(LIVE_CHANNEL)
                # Messages published from now on wait in the subscription while the history fills the gap.
                await self._catch_up(client)
                self._subscribed.set()
                delay = 0.1
                logger.info("subscribed to %s", LIVE_CHANNEL)
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        await pubsub.ping()  # a dead socket shows up here rather than as silence
                    elif message["type"] == "message":
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the subscription: reconnect, never die
                logger.warning("live subscription lost (%s); reconnecting in %.1fs", exc, delay)
                metrics.REDIS_RECONNECTS.labels("hub").inc()
            finally:
                self._subscribed.clear()
                try:
                    await pubsub.aclose()
                    await client.aclose()
                except Exception:  # closing a broken connection may fail too; nothing to do
                    pass
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)

    async def _catch_up(self, client: Redis) -> None:
        """Hand the handlers what the history recorded since the last event they got (or, at start, its tail).

        Pub/sub is at most once: whatever was published while this process was not subscribed is only in the
        stream. Handlers drop event ids they already have, so overlap with the live messages is harmless.
        """
        raw_epoch = await client.get(HISTORY_EPOCH)
        epoch = raw_epoch.decode() if raw_epoch else ""
        if self._position is None:
            tail = await client.xrevrange(EVENTS_STREAM, count=self.settings.replay_max_events)
            for entry_id, fields in reversed(tail):
                self._deliver(_event(epoch, entry_id, fields))
            if not tail:
                self._position = make_event_id(epoch or "0", "0-0")
            return
        seen_epoch, position = split_event_id(self._position)
        if seen_epoch != epoch:
            logger.warning("history epoch changed (%s → %s): the history was lost", seen_epoch, epoch)
            position = "0-0"
            for callback in self._lost_callbacks:
                callback()
        while True:
            entries = await client.xrange(EVENTS_STREAM, min="(" + position, count=500)
            if not entries:
                return
            logger.info("catching up %d events after %s", len(entries), position)
            for entry_id, fields in entries:
                self._deliver(_event(epoch, entry_id, fields))
            position = split_event_id(self._position)[1]

    def _dispatch(self, raw: bytes) -> None:
        try:
            event = Event.from_message(raw)
        except (ValueError, KeyError):
            logger.error("dropping malformed live message: %r", raw[:200])
            return
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if (
            self._position is None
            or split_event_id(event.event_id)[0] != split_event_id(self._position)[0]
            or event_key(event.event_id) > event_key(self._position)
        ):
            self._position = event.event_id
        for handler in self._handlers:
            handler(event)
