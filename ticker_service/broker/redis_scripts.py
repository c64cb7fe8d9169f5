"""The Redis broker's Lua scripts, each with its KEYS and ARGV written as named tables.

A script takes its keys and arguments by position (``KEYS[2]``, ``ARGV[14]``). Each table below is a NamedTuple
whose fields are those positions in order, so a call names every value, :func:`positional` turns the table into the
list Redis wants, and the comment block at the top of each script lists the same names (``tests/unit`` checks that
the tables, the comments and the indexes the script uses agree).
"""

from __future__ import annotations

from typing import Any, NamedTuple


def positional(table: tuple[Any, ...]) -> list[Any]:
    """A KEYS or ARGV table as the positional list a script call takes: field 1 is ``KEYS[1]``/``ARGV[1]``."""
    return list(table)


# Lua shared by PUBLISH and FANOUT: stream id order, and publishing everything after the cursor up to a target.
_PUBLISH_UPTO = """
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am > bm or (am == bm and as > bs)
end
local function publish_upto(events, published, epoch, target, channel)
  local cursor = redis.call('GET', published)
  if cursor and not after(target, cursor) then return 0 end
  local start = target
  if cursor then start = '(' .. cursor end
  local sent = 0
  while true do
    local entries = redis.call('XRANGE', events, start, target, 'COUNT', 500)
    if #entries == 0 then break end
    for _, entry in ipairs(entries) do
      local f = {}
      for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
      local id = epoch .. '-' .. entry[1]
      local message = '{"type":"' .. f['t'] .. '","event_id":"' .. id .. '","flash":' .. f['d'] .. '}'
      redis.call('PUBLISH', channel, message)
      sent = sent + 1
      start = '(' .. entry[1]
    end
  end
  redis.call('SET', published, target)
  return sent
end
"""


# -- record: append an event, make it the flash's state, answer the idempotency key, queue the fan-out job -------
class RecordKeys(NamedTuple):
    events: str  # the history stream
    flash: str  # the flash's hash
    recent: str  # zset of the not-withdrawn flashes
    flash_index: str  # zset of every kept flash
    idempotency: str  # the idempotency key (the bare prefix when the request has none)
    job: str  # arq's key of the fan-out job
    queue: str  # arq's queue
    published: str  # the live channel's publish cursor
    epoch: str  # the history's epoch
    scheduled: str  # zset of the flashes waiting for their embargo (a released one leaves it)
    pending: str  # zset of the flashes waiting for a second editor (an approved one leaves it)
    fanout_pending: str  # zset of the recorded events not yet fanned out ("<flash id>:<version>")
    fanout_queued: str  # the id of the last fan-out job queued
    fanout_woken: str  # set while a wake-up is on its way to the workers
    audit: str  # the audit log's stream


class RecordArgs(NamedTuple):
    type: str  # the event type
    flash_id: str
    doc: bytes  # the ninjs document, JSON
    version: str  # the new version
    expect_version: str  # the version being replaced; '' for a new flash
    created_ms: int  # now: a new flash's score in ``recent`` and ``flash_index``
    history_max_events: int  # the stream's approximate MAXLEN
    idempotency_result: bytes  # what the idempotency key answers from now on; '' without one
    idempotency_ttl_ms: int
    job: bytes  # the fan-out job, serialised as arq does
    job_ttl_ms: int  # how long arq's job key lives (arq's own default for a job due now)
    job_id: str
    job_due_ms: int  # when the job may run (its score in the queue): a woken worker is expected first
    listed: str  # '1' when the document is usable: it is (or goes back) in ``recent``; '0': it leaves it
    recent_max_flashes: int  # flashes kept in ``flash_index``; the oldest beyond are dropped with their hashes
    wake_channel: str  # published on ('f'), so a worker fans out now
    flash_prefix: str  # prefix of the flash hashes (to drop the oldest)
    new_epoch: str  # the epoch to create when the history has none
    trim_before_id: str  # stream id: entries older than the history's maximum age are trimmed
    held_claim: bytes  # the pending claim value this request holds; '' without an idempotency key
    job_prefix: str  # arq's job key prefix: is the last queued fan-out job still there?
    in_progress_prefix: str  # arq's in-progress key prefix: has it started?
    audit_entry: bytes  # the request's audit-log entry, JSON ('' for none): written with the event
    audit_max_entries: int  # the audit stream's approximate MAXLEN


RECORD = """
-- KEYS[1] = events, KEYS[2] = flash, KEYS[3] = recent, KEYS[4] = flash_index, KEYS[5] = idempotency, KEYS[6] = job,
-- KEYS[7] = queue, KEYS[8] = published, KEYS[9] = epoch, KEYS[10] = scheduled, KEYS[11] = pending,
-- KEYS[12] = fanout_pending, KEYS[13] = fanout_queued, KEYS[14] = fanout_woken, KEYS[15] = audit
-- ARGV[1] = type, ARGV[2] = flash_id, ARGV[3] = doc, ARGV[4] = version, ARGV[5] = expect_version,
-- ARGV[6] = created_ms, ARGV[7] = history_max_events, ARGV[8] = idempotency_result,
-- ARGV[9] = idempotency_ttl_ms, ARGV[10] = job, ARGV[11] = job_ttl_ms, ARGV[12] = job_id, ARGV[13] = job_due_ms,
-- ARGV[14] = listed, ARGV[15] = recent_max_flashes, ARGV[16] = wake_channel, ARGV[17] = flash_prefix,
-- ARGV[18] = new_epoch, ARGV[19] = trim_before_id, ARGV[20] = held_claim, ARGV[21] = job_prefix,
-- ARGV[22] = in_progress_prefix, ARGV[23] = audit_entry, ARGV[24] = audit_max_entries
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
redis.call('HDEL', KEYS[2], 'w')
-- A flash that waited (embargo, approval) counts as new from its release on: that is its place in the list.
local released = redis.call('ZREM', KEYS[10], ARGV[2]) + redis.call('ZREM', KEYS[11], ARGV[2])
if ARGV[5] == '' or released > 0 then redis.call('ZADD', KEYS[4], ARGV[6], ARGV[2]) end
if ARGV[14] == '1' then
  local score = redis.call('ZSCORE', KEYS[4], ARGV[2])
  if not score then score = ARGV[6] end
  redis.call('ZADD', KEYS[3], score, ARGV[2])
else
  redis.call('ZREM', KEYS[3], ARGV[2])
end
if ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[9]) end
-- The event waits in fanout_pending until a worker has published it and queued its push plan: a worker woken by the
-- 'f' below (only
-- the first record since a worker last started fanning out wakes them), else the fan-out job, which sweeps whatever
-- is pending when it runs. A job queued and not yet started will take this event too: only without one is another
-- queued.
redis.call('ZADD', KEYS[12], ARGV[6], ARGV[2] .. ':' .. ARGV[4])
local queued = redis.call('GET', KEYS[13])
local coalesced = queued and redis.call('EXISTS', ARGV[21] .. queued) == 1
  and redis.call('EXISTS', ARGV[22] .. queued) == 0
if not coalesced then
  redis.call('SET', KEYS[6], ARGV[10], 'PX', ARGV[11])
  redis.call('ZADD', KEYS[7], ARGV[13], ARGV[12])
  redis.call('SET', KEYS[13], ARGV[12], 'PX', ARGV[11])
end
local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[15])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[4], 0, extra - 1)
  for _, id in ipairs(old) do
    redis.call('DEL', ARGV[17] .. id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[3], id)
  end
end
if redis.call('SET', KEYS[14], '1', 'NX', 'PX', 5000) then redis.call('PUBLISH', ARGV[16], 'f') end
if ARGV[23] ~= '' then redis.call('XADD', KEYS[15], 'MAXLEN', '~', ARGV[24], '*', 'e', ARGV[23]) end
return {'ok', eid, epoch}
"""


# -- stage: a flash's state with no event (scheduled, pending, or a silent change to a held one) -------------------
class StageKeys(NamedTuple):
    flash: str  # the flash's hash
    idempotency: str  # the idempotency key (the bare prefix when the request has none)
    scheduled: str  # zset of the flashes waiting for their embargo, by its instant
    pending: str  # zset of the flashes waiting for a second editor, by when they were asked
    job: str  # arq's key of the release job (unused without an embargo)
    queue: str  # arq's queue


class StageArgs(NamedTuple):
    flash_id: str
    doc: bytes  # the ninjs document, JSON
    version: str  # the new version
    expect_version: str  # the version being replaced; '' for a new flash
    withheld: bytes  # why it waits, JSON (the hash's field ``w``); '' for none
    status: str  # 'scheduled', 'pending' or '' (the zset it joins)
    score: int  # its score there: the embargo's or the request's unix milliseconds
    idempotency_result: bytes  # what the idempotency key answers from now on; '' without one
    idempotency_ttl_ms: int
    held_claim: bytes  # the pending claim value this request holds; '' without an idempotency key
    job: bytes  # the release job, serialised as arq does; '' when not scheduled
    job_ttl_ms: int
    job_id: str
    job_due_ms: int  # when the release job runs: the embargo
    wake_channel: str  # published on ('r') with a release job, so a worker polls now and sets its timer for it


STAGE = """
-- KEYS[1] = flash, KEYS[2] = idempotency, KEYS[3] = scheduled, KEYS[4] = pending, KEYS[5] = job, KEYS[6] = queue
-- ARGV[1] = flash_id, ARGV[2] = doc, ARGV[3] = version, ARGV[4] = expect_version, ARGV[5] = withheld,
-- ARGV[6] = status, ARGV[7] = score, ARGV[8] = idempotency_result, ARGV[9] = idempotency_ttl_ms,
-- ARGV[10] = held_claim, ARGV[11] = job, ARGV[12] = job_ttl_ms, ARGV[13] = job_id, ARGV[14] = job_due_ms,
-- ARGV[15] = wake_channel
if ARGV[8] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[10] then return {'stale'} end
local cur = redis.call('HGET', KEYS[1], 'version')
if ARGV[4] == '' then
  if cur then return {'conflict'} end
elseif cur ~= ARGV[4] then
  return {'conflict'}
end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'version', ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[6] == '' then
  redis.call('HDEL', KEYS[1], 'w')
else
  redis.call('HSET', KEYS[1], 'w', ARGV[5])
  if ARGV[6] == 'scheduled' then
    redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
  else
    redis.call('ZADD', KEYS[4], ARGV[7], ARGV[1])
  end
end
if ARGV[8] ~= '' then redis.call('SET', KEYS[2], ARGV[8], 'PX', ARGV[9]) end
if ARGV[11] ~= '' then
  redis.call('SET', KEYS[5], ARGV[11], 'PX', ARGV[12])
  redis.call('ZADD', KEYS[6], ARGV[14], ARGV[13])
  -- A worker polls only every few seconds: woken, it sets a timer for the release when due before its next poll.
  redis.call('PUBLISH', ARGV[15], 'r')
end
return {'ok'}
"""


# -- discard: forget a flash that never went out (canceled before its embargo, rejected) ------------------------------
class DiscardKeys(NamedTuple):
    flash: str
    scheduled: str
    pending: str


class DiscardArgs(NamedTuple):
    flash_id: str
    expect_version: str  # the version being discarded


DISCARD = """
-- KEYS[1] = flash, KEYS[2] = scheduled, KEYS[3] = pending
-- ARGV[1] = flash_id, ARGV[2] = expect_version
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return {'conflict'} end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return {'ok'}
"""


# -- recent: the newest current flashes and the last event id at that moment ----------------------------------------
class RecentKeys(NamedTuple):
    recent: str
    events: str
    epoch: str


class RecentArgs(NamedTuple):
    limit: int  # how many flash ids to read, newest first
    flash_prefix: str
    new_epoch: str  # the epoch to create when the history has none


RECENT = """
-- KEYS[1] = recent, KEYS[2] = events, KEYS[3] = epoch
-- ARGV[1] = limit, ARGV[2] = flash_prefix, ARGV[3] = new_epoch
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


# -- publish: every entry after the publish cursor up to the target, in stream order, then move the cursor ----------
# One script, so concurrent or repeated fan-out jobs can neither reorder nor repeat events on the live channel.
class PublishKeys(NamedTuple):
    events: str
    published: str
    epoch: str


class PublishArgs(NamedTuple):
    target: str  # stream id of the event to publish up to
    live_channel: str


PUBLISH = (
    """
-- KEYS[1] = events, KEYS[2] = published, KEYS[3] = epoch
-- ARGV[1] = target, ARGV[2] = live_channel
"""
    + _PUBLISH_UPTO
    + """
return publish_upto(KEYS[1], KEYS[2], redis.call('GET', KEYS[3]) or '', ARGV[1], ARGV[2])
"""
)


# Lua shared by FANOUT and FANNED: the events leave the pending set; with none left, the fan-out job queued as a
# safety net is withdrawn (unless a worker has started it).
_FINISH = """
local function finish(pending, queued_key, queue, members, job_prefix, in_progress_prefix)
  for _, m in ipairs(members) do redis.call('ZREM', pending, m) end
  if redis.call('ZCARD', pending) > 0 then return 0 end
  local queued = redis.call('GET', queued_key)
  if queued and redis.call('EXISTS', in_progress_prefix .. queued) == 0 then
    redis.call('ZREM', queue, queued)
    redis.call('DEL', job_prefix .. queued)
    redis.call('DEL', queued_key)
    return 1
  end
  return 0
end
"""


# -- fan out: publish the pending events (with all before them) and say which they were ---------------------------
class FanoutKeys(NamedTuple):
    fanout_pending: str  # zset of the recorded events not yet fanned out ("<flash id>:<version>")
    events: str
    published: str
    epoch: str
    fanout_woken: str  # deleted: a flash recorded from now on wakes the workers again
    fanout_queued: str
    queue: str  # arq's queue


class FanoutArgs(NamedTuple):
    own: str  # "<flash id>:<version>" of the job itself (looked up even when no longer pending); '' for none
    limit: int  # at most this many pending events
    flash_prefix: str
    live_channel: str
    finish: str  # '1': nothing else is to be done for these events (no push plans): they leave the pending set now
    job_prefix: str
    in_progress_prefix: str


FANOUT = (
    """
-- KEYS[1] = fanout_pending, KEYS[2] = events, KEYS[3] = published, KEYS[4] = epoch, KEYS[5] = fanout_woken,
-- KEYS[6] = fanout_queued, KEYS[7] = queue
-- ARGV[1] = own, ARGV[2] = limit, ARGV[3] = flash_prefix, ARGV[4] = live_channel, ARGV[5] = finish,
-- ARGV[6] = job_prefix, ARGV[7] = in_progress_prefix
"""
    + _PUBLISH_UPTO
    + _FINISH
    + """
redis.call('DEL', KEYS[5])
local members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local taken = #members
local seen = {}
for _, m in ipairs(members) do seen[m] = true end
if ARGV[1] ~= '' and not seen[ARGV[1]] then members[#members + 1] = ARGV[1] end
local epoch = redis.call('GET', KEYS[4]) or ''
local found = {}
local top = nil
for i, m in ipairs(members) do
  local flash, version = string.match(m, '^(.*):([^:]*)$')
  local eid = redis.call('HGET', ARGV[3] .. flash, 'ev:' .. version)
  local kind = ''
  if eid then
    local entry = redis.call('XRANGE', KEYS[2], eid, eid, 'COUNT', 1)
    if #entry > 0 then
      for j = 1, #entry[1][2], 2 do
        if entry[1][2][j] == 't' then kind = entry[1][2][j + 1] end
      end
      if not top or after(eid, top) then top = eid end
    else
      eid = ''
    end
  else
    eid = ''
  end
  found[i] = {m, eid, kind}
end
local sent = 0
if top then sent = publish_upto(KEYS[2], KEYS[3], epoch, top, ARGV[4]) end
if ARGV[5] == '1' then finish(KEYS[1], KEYS[6], KEYS[7], members, ARGV[6], ARGV[7]) end
return {sent, epoch, found, taken}
"""
)


# -- fanned out: the events leave the pending set; with none left, the safety job still queued is not needed -------
class FannedKeys(NamedTuple):
    fanout_pending: str
    fanout_queued: str
    queue: str  # arq's queue


class FannedArgs(NamedTuple):
    members: str  # the events done, "<flash id>:<version>" each, separated by spaces
    job_prefix: str
    in_progress_prefix: str


FANNED = (
    """
-- KEYS[1] = fanout_pending, KEYS[2] = fanout_queued, KEYS[3] = queue
-- ARGV[1] = members, ARGV[2] = job_prefix, ARGV[3] = in_progress_prefix
"""
    + _FINISH
    + """
local members = {}
for m in string.gmatch(ARGV[1], '%S+') do members[#members + 1] = m end
return finish(KEYS[1], KEYS[2], KEYS[3], members, ARGV[2], ARGV[3])
"""
)


# -- replay: the events after a position, unless the reader is from another epoch or the history was trimmed past it -
class ReplayKeys(NamedTuple):
    events: str
    epoch: str


class ReplayArgs(NamedTuple):
    epoch: str  # the reader's epoch
    after: str  # stream id the reader has seen
    limit: int  # at most this many events


REPLAY = """
-- KEYS[1] = events, KEYS[2] = epoch
-- ARGV[1] = epoch, ARGV[2] = after, ARGV[3] = limit
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


# -- release: drop a pending idempotency claim, if it is still this request's ---------------------------------------
class ReleaseKeys(NamedTuple):
    idempotency: str


class ReleaseArgs(NamedTuple):
    token_suffix: str  # ':' + the claim's token: the end of the pending value ``P:<fingerprint>:<token>``


RELEASE = """
-- KEYS[1] = idempotency
-- ARGV[1] = token_suffix
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 2) == 'P:' and string.sub(v, -#ARGV[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# Each script with its tables, for the checks in tests/unit/test_redis_scripts.py.
SCRIPTS: dict[str, tuple[str, type[tuple[Any, ...]], type[tuple[Any, ...]]]] = {
    "record": (RECORD, RecordKeys, RecordArgs),
    "stage": (STAGE, StageKeys, StageArgs),
    "discard": (DISCARD, DiscardKeys, DiscardArgs),
    "recent": (RECENT, RecentKeys, RecentArgs),
    "publish": (PUBLISH, PublishKeys, PublishArgs),
    "fanout": (FANOUT, FanoutKeys, FanoutArgs),
    "fanned": (FANNED, FannedKeys, FannedArgs),
    "replay": (REPLAY, ReplayKeys, ReplayArgs),
    "release": (RELEASE, ReleaseKeys, ReleaseArgs),
}
