"""The audit log: every publish, correction and withdrawal, and every refused attempt (401, 403, 429).

An entry says who (the token's name, if one was recognised), what (action, flash id, status, detail), when and
from where (the client address). It is capped by count: a Redis stream (``XADD MAXLEN ~``) shared by all hubs, or
a deque in the embedded mode's one process. ``GET /v1/audit`` (scope ``admin``) reads the newest entries.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from starlette.requests import Request

from ..errors import REDIS_DOWN, BrokerUnavailable
from ..flashes import now_iso
from ..keys import AUDIT_STREAM

logger = logging.getLogger("ticker.audit")

Entry = dict[str, Any]


def entry(action: str, status: int, *, who: str | None, ip: str | None, flash: str | None, detail: str) -> Entry:
    return {
        "time": now_iso(),
        "action": action,
        "status": status,
        "who": who,
        "ip": ip,
        "flash": flash,
        "detail": detail,
    }


class AuditLog(Protocol):
    async def record(self, item: Entry) -> None: ...

    async def recent(self, limit: int) -> list[Entry]:
        """The newest ``limit`` entries, newest first."""
        ...


class MemoryAuditLog:
    def __init__(self, max_entries: int) -> None:
        self._entries: deque[Entry] = deque(maxlen=max_entries)

    async def record(self, item: Entry) -> None:
        self._entries.append(item)

    async def recent(self, limit: int) -> list[Entry]:
        return list(reversed(self._entries))[:limit]


class RedisAuditLog:
    def __init__(self, redis: Redis, max_entries: int) -> None:
        self.redis = redis
        self.max_entries = max_entries

    async def record(self, item: Entry) -> None:
        try:
            await self.redis.xadd(AUDIT_STREAM, {"e": orjson.dumps(item)}, maxlen=self.max_entries, approximate=True)
        except REDIS_DOWN as exc:
            # The request itself already failed or succeeded on its own; the log says the audit lost an entry.
            logger.error("audit entry not recorded (%s): %s", exc, orjson.dumps(item).decode())

    async def recent(self, limit: int) -> list[Entry]:
        try:
            rows = await self.redis.xrevrange(AUDIT_STREAM, count=limit)
        except REDIS_DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return [orjson.loads(fields[b"e"]) for _, fields in rows]


def request_entry(
    request: Request, action: str, status: int, who: str | None, *, flash: str | None = None, detail: str = ""
) -> Entry:
    """The entry for what ``request`` did or tried: its client address is where it came from."""
    ip = request.client.host if request.client else None
    return entry(action, status, who=who, ip=ip, flash=flash, detail=detail)


async def audit(
    request: Request, action: str, status: int, who: str | None, *, flash: str | None = None, detail: str = ""
) -> None:
    """Record what ``request`` did or tried."""
    log: AuditLog = request.app.state.audit
    await log.record(request_entry(request, action, status, who, flash=flash, detail=detail))
