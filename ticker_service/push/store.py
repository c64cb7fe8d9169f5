"""Devices in Redis, indexed by filter facet so a flash's devices are found by set algebra, not by a scan.

Keys (all under ``ticker:``):

* ``ticker:device:<id>`` hash: ``d`` the device JSON, ``s`` SHA-256 of its secret, ``ix`` the index sets it is in,
  ``a`` its address key
* ``ticker:devaddr:<sha256(platform, token or endpoint)>`` → id: one registration per app instance or browser,
  so a re-registering device replaces its old entry instead of being notified twice
* ``ticker:devidx:<shard>:<facet>:<value>`` sets of ids, with ``*`` for "any": ``lang:en``, ``cat:politics``,
  ``region:*``, ``urg:<max_urgency>``; ``<shard>`` is :func:`shard_of` the device id, one of
  ``DEVICE_INDEX_SHARDS``, so the push plan finds a million devices a few thousand at a time
  (``workers/push/plan.py``) instead of in one command that holds Redis for seconds

A flash of language ``en-gb``, category ``c``, regions ``r1, r2`` and urgency ``u`` goes to, in every shard,
``(lang:en-gb ∪ lang:en ∪ lang:*) ∩ (cat:c ∪ cat:*) ∩ (region:r1 ∪ region:r2 ∪ region:*) ∩ (urg:u ∪ … ∪ urg:9)``,
which is exactly :meth:`Filter.matches` for every device.

**Upgrade.** Releases before the shards wrote ``ticker:devidx:<facet>:<value>``. Those sets are still read (the
plan's first slice, :meth:`DeviceStore.targets`), a device updated or deleted leaves them (its ``ix`` names them),
and the worker moves the rest into their shards in slices at start-up (:meth:`DeviceStore.reindex_unsharded`,
logged), so nothing is lost and nothing is moved silently.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..filters import Filter
from ..flashes import Document
from ..keys import (
    DEVICE_ADDRESS_PREFIX,
    DEVICE_INDEX_PREFIX,
    DEVICE_INDEX_SHARDS,
    DEVICE_PREFIX,
    DEVICE_SCRATCH_PREFIX,
    PUSH_STATS,
)
from .device import Device

T = TypeVar("T")

_DROP = """
local function drop(id)
  local key = ARGV[1] .. id
  local ix = redis.call('HGET', key, 'ix')
  if ix then for _, k in ipairs(cjson.decode(ix)) do redis.call('SREM', k, id) end end
  local a = redis.call('HGET', key, 'a')
  if a and redis.call('GET', a) == id then redis.call('DEL', a) end
  redis.call('DEL', key)
end
"""

# ARGV: device prefix, id, device JSON, secret hash ('' keeps the stored one), index keys JSON, 'new' | 'update'
_PUT = (
    _DROP
    + """
local id = ARGV[2]
if ARGV[6] == 'update' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
  local ix = redis.call('HGET', KEYS[1], 'ix')
  if ix then for _, k in ipairs(cjson.decode(ix)) do redis.call('SREM', k, id) end end
  local a = redis.call('HGET', KEYS[1], 'a')
  if a and a ~= KEYS[2] and redis.call('GET', a) == id then redis.call('DEL', a) end
end
local other = redis.call('GET', KEYS[2])
if other and other ~= id then drop(other) end
redis.call('HSET', KEYS[1], 'd', ARGV[3], 'ix', ARGV[5], 'a', KEYS[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 's', ARGV[4]) end
for _, k in ipairs(cjson.decode(ARGV[5])) do redis.call('SADD', k, id) end
redis.call('SET', KEYS[2], id)
return 'ok'
"""
)

# ARGV: device prefix, id, expected address key ('' = any). Removes the device unless it moved to another address.
_DELETE = (
    _DROP
    + """
local a = redis.call('HGET', ARGV[1] .. ARGV[2], 'a')
if not a then return 0 end
if ARGV[3] ~= '' and a ~= ARGV[3] then return 0 end
drop(ARGV[2])
return 1
"""
)

# Moves up to ARGV[4] devices of the unsharded index (releases before the shards) into their shards: each device's
# sets and its ``ix`` in one step, so a device is always in exactly one layout. Every device is in one ``urg`` set,
# so those find them. Returns {moved, left}.
# ARGV: index prefix, device prefix, shards, count
_REINDEX = """
local prefix, shards, count, moved = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), 0
for u = 1, 9 do
  local legacy = prefix .. 'urg:' .. u
  if moved < count then
    for _, id in ipairs(redis.call('SRANDMEMBER', legacy, count - moved)) do
      local key = ARGV[2] .. id
      local ix = redis.call('HGET', key, 'ix')
      if ix then
        local shard = prefix .. (tonumber(string.sub(redis.sha1hex(id), 1, 8), 16) % shards) .. ':'
        local keys = cjson.decode(ix)
        for i, k in ipairs(keys) do
          local rest = string.sub(k, #prefix + 1)
          if string.sub(k, 1, #prefix) == prefix and not string.match(rest, '^%d+:') then
            redis.call('SREM', k, id)
            keys[i] = shard .. rest
            redis.call('SADD', keys[i], id)
          end
        end
        redis.call('HSET', key, 'ix', cjson.encode(keys))
      end
      redis.call('SREM', legacy, id)  -- an id without a device (none should be) leaves too
      moved = moved + 1
    end
  end
end
local left = 0
for u = 1, 9 do left = left + redis.call('SCARD', prefix .. 'urg:' .. u) end
return {moved, left}
"""


def address_key(platform: str, address: str) -> str:
    return DEVICE_ADDRESS_PREFIX + hashlib.sha256(f"{platform}\n{address}".encode()).hexdigest()


def secret_hash(secret: str) -> str:
    """Secrets are 192 random bits: a plain SHA-256 is enough (as for editor tokens)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def shard_of(device_id: str) -> int:
    """The device's index shard: a hash of its id, so it never changes; the reindex script computes the same one
    with Redis's ``redis.sha1hex``."""
    return int(hashlib.sha1(device_id.encode()).hexdigest()[:8], 16) % DEVICE_INDEX_SHARDS


def shard_prefix(shard: int) -> str:
    """Where shard ``shard``'s index sets are; ``-1``: the unsharded sets of releases before the shards."""
    return DEVICE_INDEX_PREFIX if shard < 0 else f"{DEVICE_INDEX_PREFIX}{shard}:"


def index_keys(flt: Filter, device_id: str) -> list[str]:
    """The index sets a device of this filter and id is in."""
    prefix = shard_prefix(shard_of(device_id))
    keys = [prefix + f"lang:{v}" for v in flt.languages or ("*",)]
    keys += [prefix + f"cat:{v}" for v in flt.categories or ("*",)]
    keys += [prefix + f"region:{v}" for v in flt.regions or ("*",)]
    keys.append(prefix + f"urg:{flt.max_urgency}")
    return keys


def flash_facets(doc: Document) -> list[list[str]]:
    """For each facet, the index sets (names within a shard) whose union holds the devices that accept this flash
    on that facet."""
    parts = str(doc.get("language", "")).lower().split("-")
    langs = ["-".join(parts[: i + 1]) for i in range(len(parts))] + ["*"]
    cats = [s.get("literal") for s in doc.get("subjects", ())] + ["*"]
    regions = [p.get("literal") for p in doc.get("places", ())] + ["*"]
    urgency = int(doc.get("urgency", 9))
    return [
        [f"lang:{v}" for v in langs],
        [f"cat:{v}" for v in cats],
        [f"region:{v}" for v in regions],
        [f"urg:{u}" for u in range(urgency, 10)],
    ]


class DeviceStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._put = redis.register_script(_PUT)
        self._delete = redis.register_script(_DELETE)
        self._reindex = redis.register_script(_REINDEX)

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc

    async def register(self, device: Device) -> str:
        """Store a new device; return its secret (only its hash is kept)."""
        secret = secrets.token_urlsafe(24)
        await self._write(device, secret_hash(secret), "new")
        return secret

    async def update(self, device: Device) -> bool:
        return await self._write(device, "", "update")

    async def _write(self, device: Device, hashed: str, mode: str) -> bool:
        keys = [DEVICE_PREFIX + device.id, address_key(device.platform, device.address)]
        ix = orjson.dumps(index_keys(device.filter, device.id))
        args: list[Any] = [DEVICE_PREFIX, device.id, orjson.dumps(device.to_record()), hashed, ix, mode]
        result = await self._call(lambda: self._put(keys=keys, args=args))
        return bool(result == b"ok")

    async def check_secret(self, device_id: str, secret: str) -> bool | None:
        """``None``: no such device; else whether ``secret`` is its secret (compared in constant time)."""
        stored: bytes | None = await self._call(lambda: self.redis.hget(DEVICE_PREFIX + device_id, "s"))  # type: ignore[arg-type, return-value]
        if stored is None:
            return None
        return hmac.compare_digest(stored, secret_hash(secret).encode())

    async def delete(self, device_id: str, address: tuple[str, str] | None = None) -> bool:
        """Remove a device; with ``address`` (platform, token), only if it is still registered at that address."""
        expected = address_key(*address) if address else ""
        return bool(await self._call(lambda: self._delete(keys=[], args=[DEVICE_PREFIX, device_id, expected])))

    async def get(self, device_id: str) -> Device | None:
        return (await self.load([device_id]))[0]

    async def load(self, ids: list[str]) -> list[Device | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.hget(DEVICE_PREFIX + device_id, "d")
            raw: list[Any] = await self._call(pipe.execute)
        return [None if r is None else Device.from_record(i, orjson.loads(r)) for i, r in zip(ids, raw, strict=True)]

    async def stats(self) -> dict[str, int]:
        """Notifications counted by the push jobs, by ``<platform>:<outcome>``."""
        raw: dict[bytes, bytes] = await self._call(lambda: self.redis.hgetall(PUSH_STATS))  # type: ignore[arg-type, return-value]
        return {k.decode(): int(v) for k, v in raw.items()}

    async def targets(self, doc: Document) -> list[str]:
        """The ids of every device whose filter accepts ``doc``, sorted: every shard (and the unsharded sets of an
        older release) in one transaction. For tests and small audiences; the push plan goes a slice at a time."""
        tmp = f"{DEVICE_SCRATCH_PREFIX}{secrets.token_hex(8)}:"
        facets = flash_facets(doc)
        scratch = [f"{tmp}{i}" for i in range(len(facets))]
        async with self.redis.pipeline(transaction=True) as pipe:
            for shard in range(-1, DEVICE_INDEX_SHARDS):
                prefix = shard_prefix(shard)
                for name, keys in zip(scratch, facets, strict=True):
                    pipe.sunionstore(name, [prefix + k for k in keys])
                pipe.sinter(scratch)
            pipe.delete(*scratch)
            result = await self._call(pipe.execute)
        found = result[len(facets) :: len(facets) + 1][: DEVICE_INDEX_SHARDS + 1]
        return sorted(member.decode() for members in found for member in members)

    async def reindex_unsharded(self, count: int) -> tuple[int, int]:
        """Move up to ``count`` devices of an older release's unsharded index into their shards; return how many
        were moved and how many are left."""
        args: list[str | int] = [DEVICE_INDEX_PREFIX, DEVICE_PREFIX, DEVICE_INDEX_SHARDS, count]
        moved, left = await self._call(lambda: self._reindex(keys=[], args=args))
        return int(moved), int(left)
