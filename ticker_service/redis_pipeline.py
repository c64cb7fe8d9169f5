"""One socket write for the Redis scripts of concurrent requests: the hub's ingest calls, pipelined automatically.

Every ``POST /v1/flashes`` calls two scripts (the token's lookup with its write counted, then the record). Sent one
by one, each call is a write and a read on its own; on loopback the write alone costs the hub ~0.1 ms of CPU, as
the kernel delivers the bytes to Redis inside the ``send``. Here every call made during one turn of the event loop
joins one batch, written with one ``send`` on one connection; a batch follows the one before without waiting for its
replies, and one reader reads the replies back in order. Ten editors posting at once cost a few writes, not twenty.

Each call keeps its own outcome: an error reply (the script's refusal, ``NOSCRIPT``, ``READONLY``) is that call's
alone. A timeout (``TICKER_REDIS_TIMEOUT_SECONDS``, per reply) or a lost connection fails every call waiting on the
connection, which is dropped, as it fails a single command: the callers see redis-py's ``TimeoutError`` or
``ConnectionError`` and answer 503. A caller that goes away leaves its reply to be read and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Call = tuple[bytes, "asyncio.Future[Any]"]


def _encoded(value: Any) -> bytes:
    """An argument other than bytes or str as redis-py's encoder writes it: numbers by ``repr``, nothing else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    raise DataError(f"Invalid input of type {type(value).__name__!r} for a Redis command")


def _pack_in_python(items: tuple[Any, ...]) -> bytes:
    data = [v if type(v) is bytes else v.encode() if type(v) is str else _encoded(v) for v in items]
    return b"*%d\r\n%b" % (len(data), b"".join([b"$%d\r\n%b\r\n" % (len(v), v) for v in data]))


try:  # hiredis (redis-py's parser here) packs in C, byte for byte as redis-py does; it is optional
    from hiredis import pack_command as _hiredis_pack

    HIREDIS = True
except ImportError:  # pragma: no cover
    HIREDIS = False


def evalsha_command(sha: str, keys: Sequence[Any], args: Sequence[Any]) -> bytes:
    """``EVALSHA`` in the Redis protocol, packed at once: redis-py's ``pack_command`` takes a Python loop with
    several calls per argument, and the record script has ~40 of them (a quarter of a POST's CPU in the hub).
    Arguments are written as redis-py writes them: bytes as they are, str as UTF-8, numbers by ``repr``."""
    items = ("EVALSHA", sha, len(keys), *keys, *args)
    if HIREDIS:
        with contextlib.suppress(TypeError):  # a bool, None or another type: refused below, as redis-py does
            packed: bytes = _hiredis_pack(items)
            return packed
    return _pack_in_python(items)


class ScriptPipeline:
    """Script calls on ``redis``'s server, pipelined across the requests of one process (see the module)."""

    def __init__(self, redis: Redis) -> None:
        self._pool = redis.connection_pool
        self._queued: list[Call] = []  # not yet written
        self._sent: deque[asyncio.Future[Any]] = deque()  # written, waiting for their replies, in order
        self._conn: AbstractConnection | None = None
        self._writer: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """``script(keys=keys, args=args)``, written with the other calls of this loop turn."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((evalsha_command(script.sha, keys, args), future))
        if self._writer is None:  # it starts on the next turn, so every call of this one joins the batch
            self._writer = asyncio.ensure_future(self._write())
        try:
            return await future
        except NoScriptError:
            # The server lost its scripts (a restart, a failover): redis-py's call loads it again.
            return await script(keys=list(keys), args=list(args))

    async def _write(self) -> None:
        conn = self._conn
        try:
            if conn is None:
                conn = await self._pool.get_connection()
                self._conn = conn
            while self._queued:
                batch, self._queued = self._queued, []
                self._sent.extend(future for _, future in batch)
                if self._reader is None:
                    self._reader = asyncio.ensure_future(self._read(conn))
                await conn.send_packed_command(b"".join(command for command, _ in batch), check_health=False)
        except BaseException as exc:
            await self._broken(conn, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._writer = None
            if self._queued:  # queued while a broken connection was being dropped: they go on a new one
                self._writer = asyncio.ensure_future(self._write())

    async def _read(self, conn: AbstractConnection) -> None:
        try:
            while self._sent and self._conn is conn:
                try:
                    reply: Any = await conn.read_response()
                except ResponseError as exc:  # an error reply: this call's alone, the connection is fine
                    reply = exc
                future = self._sent.popleft()
                if future.done():  # its caller went away
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except BaseException as exc:
            await self._broken(conn, exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if self._reader is asyncio.current_task():
                self._reader = None

    async def _broken(self, conn: AbstractConnection | None, exc: BaseException) -> None:
        """Fail every call waiting on ``conn`` (and those queued for it) and drop it; the next call connects anew."""
        if conn is not None and self._conn is not conn:
            return  # already dropped: its calls have failed
        message = str(exc) or type(exc).__name__
        unreachable = isinstance(exc, (RedisConnectionError, OSError, asyncio.CancelledError))
        kind = RedisTimeoutError if isinstance(exc, (RedisTimeoutError, TimeoutError)) else RedisConnectionError
        waiting = [*self._sent, *(future for _, future in self._queued)]
        self._sent.clear()
        self._queued = []
        self._conn = None
        self._reader = None  # the one reading ``conn`` ends by itself; the next connection gets its own
        for future in waiting:
            if not future.done():  # Redis down (each its own exception), else a bug, as it was raised
                future.set_exception(kind(message) if unreachable or kind is RedisTimeoutError else exc)
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            finally:
                await self._pool.release(conn)
