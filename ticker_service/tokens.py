"""Editor tokens: shown once when created, stored only as SHA-256, compared in constant time.

A token is 192 random bits with a recognisable ``tkr_`` prefix, so a leaked one is easy to grep for. Tokens have
high entropy, so a plain SHA-256 is enough (no slow KDF). Two stores share this logic: a JSON file in the embedded
mode's data directory, and a Redis hash in the distributed mode.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from .problems import BrokerUnavailable

PREFIX = "tkr_"
REDIS_KEY = "ticker:tokens"  # hash: name -> JSON {"sha256", "created"}


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(24)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Editor:
    """Who is publishing: the token's name (for logs and idempotency scopes) and the token's hash."""

    name: str
    token_hash: str


def _find(records: dict[str, str], token: str) -> Editor | None:
    """Constant-time match of ``token`` against every stored hash."""
    wanted = digest(token)
    found: Editor | None = None
    for name, stored in records.items():
        if hmac.compare_digest(stored, wanted):
            found = Editor(name=name, token_hash=stored)
    return found


class TokenStore(Protocol):
    async def create(self, name: str) -> str:
        """Create (or replace) the token called ``name``; return the token, which is never stored."""
        ...

    async def revoke(self, name: str) -> bool: ...

    async def authenticate(self, token: str) -> Editor | None: ...


class FileTokenStore:
    """Token hashes in ``<data_dir>/tokens.json``, re-read on each check so CLI changes apply at once."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "tokens.json"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return {name: rec["sha256"] for name, rec in data.items()}

    def _save(self, records: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {name: {"sha256": sha, "created": int(time.time())} for name, sha in records.items()}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens.")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    async def create(self, name: str) -> str:
        token = new_token()
        records = self._load()
        records[name] = digest(token)
        self._save(records)
        return token

    async def revoke(self, name: str) -> bool:
        records = self._load()
        if records.pop(name, None) is None:
            return False
        self._save(records)
        return True

    async def authenticate(self, token: str) -> Editor | None:
        return _find(self._load(), token)


class RedisTokenStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(self, name: str) -> str:
        token = new_token()
        await self.redis.hset(  # type: ignore[misc]
            REDIS_KEY, name, json.dumps({"sha256": digest(token), "created": int(time.time())}))
        return token

    async def revoke(self, name: str) -> bool:
        return bool(await self.redis.hdel(REDIS_KEY, name))  # type: ignore[misc]

    async def authenticate(self, token: str) -> Editor | None:
        try:
            raw = await self.redis.hgetall(REDIS_KEY)  # type: ignore[misc]
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(str(exc)) from exc
        records = {k.decode(): json.loads(v)["sha256"] for k, v in raw.items()}
        return _find(records, token)
