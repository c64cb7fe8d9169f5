"""The plan of one event's device pushes, built a slice of index shards at a time and sent while it grows.

The devices of a flash are found shard by shard (``ticker_service/push/store.py``: devices are indexed in
``DEVICE_INDEX_SHARDS`` shards by a hash of their id). One :data:`STEP` script call plans the next shards until it
has added at least ``want`` devices to the event's list ``ticker:pushplan:<flash>:<version>`` (the batch order) and
moves the event's cursor past them, in one atomic step: a plan job killed between steps re-runs from the cursor, and
no shard is added twice. A plan job takes steps for the first 30 % of its time, then queues its continuation; a
million devices are planned in a few seconds of steps, none of which holds Redis for long.

The batch chains (``parallel_batches`` of them: batch ``i`` queues batch ``i + parallel_batches`` when done) start as
soon as their first batch is planned whole (a batch is never read while the plan may still add to it). A chain that
reaches the end of what is planned so far before the plan is complete asks :data:`FRONTIER`, which either lets it go
on, ends it (the plan is complete), or records it as waiting (``w:<batch>`` in the event's state hash) in the same
atomic step; after each step the plan job queues the waiting batches the step made ready, and drops those beyond the
end once the plan is complete. The chains' heads are the first waiting batches, written by the first step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis

from ticker_service.broker.redis_scripts import positional
from ticker_service.flashes import Document
from ticker_service.keys import (
    DEVICE_INDEX_PREFIX,
    DEVICE_INDEX_SHARDS,
    DEVICE_SCRATCH_PREFIX,
    PUSH_PLAN_PREFIX,
    PUSH_PLAN_STATE_PREFIX,
)
from ticker_service.push.store import flash_facets

DONE = DEVICE_INDEX_SHARDS  # the cursor of a complete plan


class PlanKeys(NamedTuple):
    state: str  # hash: cursor (the next shard to plan; -1 the unsharded index of an older release), w:<batch>
    plan: str  # list of the planned device ids, in batch order


class StepArgs(NamedTuple):
    facets: str  # JSON: per facet, the index sets (names within a shard) whose union accepts the flash
    index_prefix: str  # DEVICE_INDEX_PREFIX; shard n's sets are under "<prefix><n>:"
    shards: int  # DEVICE_INDEX_SHARDS
    want: int  # the step stops after the shard that brings it to this many devices
    heads: int  # the batch chains: batches 0 .. heads - 1 wait from the first step on
    ttl: int  # seconds the plan and its state live
    scratch: str  # prefix of the step's temporary union sets (deleted in the same step)


class FrontierArgs(NamedTuple):
    batch: int  # the batch a chain goes on with
    batch_size: int
    shards: int  # DEVICE_INDEX_SHARDS: the cursor of a complete plan


# Returns {cursor, devices planned in all}.
STEP = """
-- KEYS[1] = state, KEYS[2] = plan
-- ARGV[1] = facets, ARGV[2] = index_prefix, ARGV[3] = shards, ARGV[4] = want, ARGV[5] = heads, ARGV[6] = ttl
-- ARGV[7] = scratch
local facets = cjson.decode(ARGV[1])
local shards, want = tonumber(ARGV[3]), tonumber(ARGV[4])
local cursor = tonumber(redis.call('HGET', KEYS[1], 'cursor'))
if cursor == nil then
  cursor = -1  -- the unsharded sets first: a device moved from them to its shard meanwhile is found there later
  for i = 0, tonumber(ARGV[5]) - 1 do redis.call('HSET', KEYS[1], 'w:' .. i, '1') end
end
local added = 0
while cursor < shards and added < want do
  local prefix = ARGV[2]
  if cursor >= 0 then prefix = prefix .. cursor .. ':' end
  local sets, scratch, empty = {}, {}, false
  for i, names in ipairs(facets) do
    if #names == 1 then
      sets[i] = prefix .. names[1]
      empty = redis.call('SCARD', sets[i]) == 0
    else
      local full = {}
      for j, name in ipairs(names) do full[j] = prefix .. name end
      sets[i] = ARGV[7] .. i
      scratch[#scratch + 1] = sets[i]
      empty = redis.call('SUNIONSTORE', sets[i], unpack(full)) == 0
    end
    if empty then break end
  end
  if not empty then
    local ids = redis.call('SINTER', unpack(sets))
    for i = 1, #ids, 4000 do redis.call('RPUSH', KEYS[2], unpack(ids, i, math.min(i + 3999, #ids))) end
    added = added + #ids
  end
  if #scratch > 0 then redis.call('DEL', unpack(scratch)) end
  cursor = cursor + 1
end
redis.call('HSET', KEYS[1], 'cursor', cursor)
redis.call('EXPIRE', KEYS[1], ARGV[6])
local total = redis.call('LLEN', KEYS[2])
if total > 0 then redis.call('EXPIRE', KEYS[2], ARGV[6]) end
return {cursor, total}
"""

# 'go': the batch is planned whole (or the complete plan ends inside it); 'end': the complete plan (or one of an
# older release, which has no state) ends before it; 'wait': recorded as waiting for the plan to reach it.
FRONTIER = """
-- KEYS[1] = state, KEYS[2] = plan
-- ARGV[1] = batch, ARGV[2] = batch_size, ARGV[3] = shards
local total, batch, size = redis.call('LLEN', KEYS[2]), tonumber(ARGV[1]), tonumber(ARGV[2])
if (batch + 1) * size <= total then return 'go' end
local cursor = tonumber(redis.call('HGET', KEYS[1], 'cursor'))
if cursor == nil or cursor >= tonumber(ARGV[3]) then
  if batch * size < total then return 'go' end
  return 'end'
end
redis.call('HSET', KEYS[1], 'w:' .. ARGV[1], '1')
return 'wait'
"""

# name -> (source, KEYS table, ARGV table), for the checks in tests/unit/test_redis_scripts.py
SCRIPTS: dict[str, tuple[str, type[tuple[Any, ...]], type[tuple[Any, ...]]]] = {
    "plan_step": (STEP, PlanKeys, StepArgs),
    "plan_frontier": (FRONTIER, PlanKeys, FrontierArgs),
}


class Plan:
    """One event's plan in Redis: its steps, the chains' frontier, the batches waiting for it."""

    def __init__(self, redis: Redis, flash_id: str, version: str, batch_size: int) -> None:
        self.redis = redis
        self.batch_size = batch_size
        self.keys = PlanKeys(f"{PUSH_PLAN_STATE_PREFIX}{flash_id}:{version}", f"{PUSH_PLAN_PREFIX}{flash_id}:{version}")
        self._step = redis.register_script(STEP)
        self._frontier = redis.register_script(FRONTIER)

    async def step(self, doc: Document, heads: int, ttl: int, want: int) -> tuple[int, int]:
        """Plan the next shards until at least ``want`` devices are added (``TICKER_PUSH_PLAN_STEP_DEVICES``: a step
        holds Redis for its time); return the cursor (:data:`DONE` when complete) and the devices planned in all."""
        args = StepArgs(
            orjson.dumps(flash_facets(doc)).decode(),
            DEVICE_INDEX_PREFIX,
            DEVICE_INDEX_SHARDS,
            want,
            heads,
            ttl,
            f"{DEVICE_SCRATCH_PREFIX}plan:",
        )
        cursor, total = await self._step(keys=positional(self.keys), args=positional(args))
        return int(cursor), int(total)

    async def frontier(self, batch: int) -> str:
        """Whether a chain goes on with ``batch``: 'go', 'end', or 'wait' (the plan job queues it when planned)."""
        args = FrontierArgs(batch, self.batch_size, DEVICE_INDEX_SHARDS)
        result = await self._frontier(keys=positional(self.keys), args=positional(args))
        return result.decode() if isinstance(result, bytes) else str(result)

    async def waiting(self, total: int, done: bool) -> tuple[list[int], list[int]]:
        """The waiting batches the plan has reached (to queue: planned whole, or the last one of a complete plan),
        and those it never will (the plan is complete and ends before them)."""
        fields: list[bytes] = await self.redis.hkeys(self.keys.state)  # type: ignore[misc]
        batches = sorted(int(f[2:]) for f in fields if f.startswith(b"w:"))
        size = self.batch_size
        ready = [b for b in batches if (b + 1) * size <= total or (done and b * size < total)]
        beyond = [b for b in batches if b * size >= total] if done else []
        return ready, beyond

    async def started(self, batches: list[int]) -> None:
        """Forget waiting batches once queued (or dropped): after the queueing, so a job killed in between queues
        them again on its re-run (the job ids dedupe, the claims stop a second send)."""
        if batches:
            await self.redis.hdel(self.keys.state, *(f"w:{b}" for b in batches))  # type: ignore[misc]
