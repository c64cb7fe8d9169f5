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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import WatchError

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..keys import EDITOR_TOKENS

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


class RedisTokenStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, name: str, scopes: frozenset[str] = EDITOR_SCOPES, desk: Desk = ANY_DESK) -> str:
        token = new_token()
        await self.redis.hset(EDITOR_TOKENS, name, json.dumps(_record(token, scopes, desk)))  # type: ignore[misc]
        return token

    async def rotate(self, name: str, overlap_seconds: float) -> str | None:
        token = new_token()
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:  # optimistic: a concurrent change to the hash makes this try again
                try:
                    await pipe.watch(EDITOR_TOKENS)
                    raw = await pipe.hget(EDITOR_TOKENS, name)  # type: ignore[misc]
                    if raw is None:
                        return None
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(EDITOR_TOKENS, name, json.dumps(_rotated(json.loads(raw), token, overlap_seconds)))
                    await pipe.execute()
                    return token
                except WatchError:
                    continue

    async def revoke(self, name: str) -> bool:
        return bool(await self.redis.hdel(EDITOR_TOKENS, name))  # type: ignore[misc]

    async def authenticate(self, token: str) -> Editor | None:
        try:
            raw = await self.redis.hgetall(EDITOR_TOKENS)  # type: ignore[misc]
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        records = {k.decode(): json.loads(v) for k, v in raw.items()}
        return _find(records, token)
