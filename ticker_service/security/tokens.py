"""Editor tokens: shown once when created, stored only as SHA-256, compared in constant time.

A token is 192 random bits with a recognisable ``tkr_`` prefix, so a leaked one is easy to grep for. Tokens have
high entropy, so a plain SHA-256 is enough (no slow KDF). Two stores share this logic: a JSON file in the embedded
mode's data directory, and a Redis hash in the distributed mode.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..keys import EDITOR_TOKEN_DIGESTS, EDITOR_TOKENS
from ..redis_pipeline import ScriptPipeline
from .ratelimit import WINDOW, window, window_key

PREFIX = "tkr_"
SCOPES = ("publish", "correct", "withdraw", "approve", "admin")
EDITOR_SCOPES = frozenset({"publish", "correct", "withdraw"})  # what a token without --scopes may do


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(24)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Desk:
    """The languages and categories a token may publish in (empty means any), and whether its FLASHes (urgency 1)
    wait for a second editor's approval."""

    languages: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    needs_approval: bool = False

    def refuses(self, language: str, category: str) -> str | None:
        """Why a flash in ``language``/``category`` is outside this desk, or ``None`` if it is inside.

        Languages match like reader filters (BCP 47 basic filtering): the desk ``en`` covers ``en-GB``.
        """
        tag = language.lower()
        if self.languages and not any(tag == r or tag.startswith(r + "-") for r in self.languages):
            return f"language {language!r} is outside this desk ({', '.join(self.languages)})"
        if self.categories and category.lower() not in self.categories:
            return f"category {category!r} is outside this desk ({', '.join(self.categories)})"
        return None


ANY_DESK = Desk()


@dataclass(frozen=True, slots=True)
class Editor:
    """Who is publishing: the token's name (for logs and audit), a stable id (idempotency scopes survive a
    rotation), what it may do and on which desk."""

    name: str
    token_hash: str
    scopes: frozenset[str] = EDITOR_SCOPES
    desk: Desk = ANY_DESK


def _record(token: str, scopes: frozenset[str], desk: Desk = ANY_DESK) -> dict[str, Any]:
    unknown = scopes - set(SCOPES)
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; known: {', '.join(SCOPES)}")
    hashed = digest(token)
    return {
        "id": hashed,
        "sha256": hashed,
        "created": int(time.time()),
        "scopes": sorted(scopes),
        "languages": [lang.lower() for lang in desk.languages],
        "categories": [c.lower() for c in desk.categories],
        "needs_approval": desk.needs_approval,
    }


def _rotated(record: dict[str, Any], token: str, overlap_seconds: float) -> dict[str, Any]:
    """``record`` with ``token`` as its hash; the old hash stays valid for ``overlap_seconds`` more."""
    now = time.time()
    previous = [p for p in record.get("previous", []) if p["until"] > now]
    if overlap_seconds > 0:
        previous.append({"sha256": record["sha256"], "until": now + overlap_seconds})
    return {**record, "sha256": digest(token), "rotated": int(now), "previous": previous}


def _editor(name: str, record: dict[str, Any]) -> Editor:
    return Editor(
        name=name,
        token_hash=record.get("id", record["sha256"]),
        scopes=frozenset(record.get("scopes", EDITOR_SCOPES)),
        desk=Desk(
            tuple(record.get("languages", ())),
            tuple(record.get("categories", ())),
            bool(record.get("needs_approval", False)),
        ),
    )


def _find(records: dict[str, dict[str, Any]], token: str) -> Editor | None:
    """Constant-time match of ``token`` against every stored hash, and the old ones still in their overlap."""
    wanted = digest(token)
    now = time.time()
    found: Editor | None = None
    for name, record in records.items():
        hashes = [record["sha256"], *(p["sha256"] for p in record.get("previous", ()) if p["until"] > now)]
        for stored in hashes:
            if hmac.compare_digest(stored, wanted):
                found = _editor(name, record)
    return found


class TokenStore(Protocol):
    async def create(self, name: str, scopes: frozenset[str] = EDITOR_SCOPES, desk: Desk = ANY_DESK) -> str:
        """Create (or replace) the token called ``name``; return the token, which is never stored."""
        ...

    async def rotate(self, name: str, overlap_seconds: float) -> str | None:
        """A new token for ``name`` (same scopes and desk), valid at once; the old one works ``overlap_seconds``
        more. ``None`` if there is no such token."""
        ...

    async def revoke(self, name: str) -> bool: ...

    async def authenticate(self, token: str) -> Editor | None: ...

    async def authenticate_write(self, token: str, scope: str) -> tuple[Editor | None, tuple[int, float] | None]:
        """:meth:`authenticate`, and a write of ``scope`` counted against the token's limit in the same step where
        the store can: ``(count, seconds left in the window)``, or None for the caller to count."""
        ...


class FileTokenStore:
    """Token hashes in ``<data_dir>/tokens.json``, re-read on each check so CLI changes apply at once.

    Changes take an exclusive lock on ``tokens.lock`` and replace the file atomically, so two ``ticker token``
    commands at once cannot lose each other's token.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "tokens.json"

    def _records(self) -> dict[str, dict[str, Any]]:
        try:
            data: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.parent / "tokens.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._records()
            yield records
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens.")
            with os.fdopen(fd, "w") as fh:
                json.dump(records, fh, indent=2)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)

    async def create(self, name: str, scopes: frozenset[str] = EDITOR_SCOPES, desk: Desk = ANY_DESK) -> str:
        token = new_token()
        record = _record(token, scopes, desk)
        with self._changing() as records:
            records[name] = record
        return token

    async def rotate(self, name: str, overlap_seconds: float) -> str | None:
        token = new_token()
        with self._changing() as records:
            if name not in records:
                return None
            records[name] = _rotated(records[name], token, overlap_seconds)
        return token

    async def revoke(self, name: str) -> bool:
        with self._changing() as records:
            return records.pop(name, None) is not None

    async def authenticate(self, token: str) -> Editor | None:
        return _find(self._records(), token)

    async def authenticate_write(self, token: str, scope: str) -> tuple[Editor | None, tuple[int, float] | None]:
        return _find(self._records(), token), None


# The token's lookup by its digest and, for a write, the count of the token's writes this minute, in one round trip.
# The stored record decides: the digest must be its current hash or an old one still in its overlap, and only a token
# with the write's scope is counted (one without it is refused with a 403, which counts nothing).
AUTHENTICATE = """
-- KEYS[1] = tokens, KEYS[2] = digests
-- ARGV[1] = digest, ARGV[2] = now, ARGV[3] = scope, ARGV[4] = rate_prefix, ARGV[5] = rate_suffix, ARGV[6] = rate_ttl
local name = redis.call('HGET', KEYS[2], ARGV[1])
if not name then return {'unindexed'} end
local raw = redis.call('HGET', KEYS[1], name)
if not raw then return {'none'} end
local record = cjson.decode(raw)
local valid = record['sha256'] == ARGV[1]
for _, old in ipairs(record['previous'] or {}) do
  if old['sha256'] == ARGV[1] and old['until'] > tonumber(ARGV[2]) then valid = true end
end
if not valid then return {'none'} end
local count = 0
if ARGV[3] ~= '' then
  local scopes = record['scopes'] or {'publish', 'correct', 'withdraw'}
  for _, scope in ipairs(scopes) do
    if scope == ARGV[3] then
      local key = ARGV[4] .. name .. ARGV[5]
      count = redis.call('INCR', key)
      redis.call('EXPIRE', key, ARGV[6])
    end
  end
end
return {'ok', name, raw, count}
"""


class AuthenticateKeys(NamedTuple):
    tokens: str
    digests: str


class AuthenticateArgs(NamedTuple):
    digest: str  # SHA-256 of the presented token
    now: float  # unix seconds: an old hash's overlap must not have ended
    scope: str  # count a write of this scope ('' for none)
    rate_prefix: str  # the count's key is rate_prefix + name + rate_suffix (RedisRateLimiter's key for the token)
    rate_suffix: str
    rate_ttl: int


def _digests(record: dict[str, Any]) -> list[str]:
    return [record["sha256"], *(p["sha256"] for p in record.get("previous", ()))]


class RedisTokenStore:
    """Records in the hash ``ticker:tokens`` by name, and an index from each valid digest to its name, so a request
    finds its token with one lookup however many tokens there are. Tokens stored before the index existed are found
    by a scan and indexed then. The lookup goes out with the other requests' script calls of the same loop turn
    (``scripts``: the broker's, so a lookup and another request's record share a write)."""

    def __init__(self, redis: Redis, scripts: ScriptPipeline | None = None) -> None:
        self.redis = redis
        self._authenticate = redis.register_script(AUTHENTICATE)
        self._scripts = scripts or ScriptPipeline(redis)

    async def _replace(self, name: str, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> bool:
        """Apply ``change`` to ``name``'s record (None: absent / delete it) with its digests indexed, atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:  # optimistic: a concurrent change to the hash makes this try again
                try:
                    await pipe.watch(EDITOR_TOKENS)
                    raw = await pipe.hget(EDITOR_TOKENS, name)  # type: ignore[misc]
                    old = json.loads(raw) if raw is not None else None
                    new = change(old)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    if old is not None:
                        pipe.hdel(EDITOR_TOKEN_DIGESTS, *_digests(old))
                    if new is None:
                        pipe.hdel(EDITOR_TOKENS, name)
                    else:
                        pipe.hset(EDITOR_TOKENS, name, json.dumps(new))
                        pipe.hset(EDITOR_TOKEN_DIGESTS, mapping=dict.fromkeys(_digests(new), name))
                    await pipe.execute()
                    return old is not None
                except WatchError:
                    continue

    async def create(self, name: str, scopes: frozenset[str] = EDITOR_SCOPES, desk: Desk = ANY_DESK) -> str:
        token = new_token()
        record = _record(token, scopes, desk)
        await self._replace(name, lambda _: record)
        return token

    async def rotate(self, name: str, overlap_seconds: float) -> str | None:
        token = new_token()
        found = await self._replace(name, lambda old: None if old is None else _rotated(old, token, overlap_seconds))
        return token if found else None

    async def revoke(self, name: str) -> bool:
        return await self._replace(name, lambda _: None)

    async def authenticate(self, token: str) -> Editor | None:
        editor, _ = await self.authenticate_write(token, "")
        return editor

    async def authenticate_write(self, token: str, scope: str) -> tuple[Editor | None, tuple[int, float] | None]:
        """The token's editor and, if it has ``scope``, its writes counted this minute (count, seconds left); the
        count is None when the token was found by a scan (the caller counts then)."""
        wanted = digest(token)
        start, left = window(time.time())
        keys = AuthenticateKeys(tokens=EDITOR_TOKENS, digests=EDITOR_TOKEN_DIGESTS)
        # The count's key is RedisRateLimiter's for "token:<name>" (what api/editors.py limits): name goes between.
        prefix, suffix = window_key("token:\0", start).split("\0")
        args = AuthenticateArgs(wanted, time.time(), scope, prefix, suffix, WINDOW + 5)
        try:
            found = await self._scripts.run(self._authenticate, keys, args)
            if found[0] == b"unindexed":
                return await self._scan(token), None
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        if found[0] != b"ok":
            return None, None
        name, record, count = found[1].decode(), orjson.loads(found[2]), int(found[3])
        editor = _find({name: record}, token)  # the digest compared again, in constant time
        counted = (count, left) if editor is not None and scope in editor.scopes else None
        return editor, counted

    async def _scan(self, token: str) -> Editor | None:
        """A token stored before the digest index: compare every record, and index the one that matches."""
        raw = await self.redis.hgetall(EDITOR_TOKENS)  # type: ignore[misc]
        records = {k.decode(): orjson.loads(v) for k, v in raw.items()}
        editor = _find(records, token)
        if editor is not None:
            index = dict.fromkeys(_digests(records[editor.name]), editor.name)
            await self.redis.hset(EDITOR_TOKEN_DIGESTS, mapping=index)  # type: ignore[misc]
        return editor
