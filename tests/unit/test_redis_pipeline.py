"""The auto-pipelined script calls against a real Redis: each call its own result or error, one write per loop turn,
a timeout or a lost connection failing the calls that wait (then connecting anew), and scripts the server forgot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ticker_service.redis_pipeline import ScriptPipeline, _pack_in_python, evalsha_command

from ..support.blackhole import BlackHole
from ..support.processes import RedisServer

# Echoes its key and argument; an argument of 'boom' is an error reply (this call's alone).
ECHO = """
if ARGV[1] == 'boom' then return redis.error_reply('ERR boom') end
redis.call('INCR', KEYS[1])
return {KEYS[1], ARGV[1]}
"""


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    async with Redis(port=redis_server.port, socket_timeout=2) as client:
        await client.flushdb()
        yield client


async def reads_processed(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_reads_processed"])


def test_packs_as_redis_py_does() -> None:
    """The same bytes as redis-py's pack_command, in C and in Python, for every type ticker passes."""
    args = ("abc", b"\x00bin\xff", 5, 1.5, "héllo", 0, -3, 1e20, "", 2**63)
    expected = b"".join(Connection().pack_command("EVALSHA", "sha1", 2, "k1", "ké", *args))
    assert evalsha_command("sha1", ["k1", "ké"], args) == expected
    assert _pack_in_python(("EVALSHA", "sha1", 2, "k1", "ké", *args)) == expected


async def test_concurrent_calls_get_their_own_replies_in_one_write(redis: Redis) -> None:
    pipeline = ScriptPipeline(redis)
    script = redis.register_script(ECHO)
    await pipeline.run(script, ["warm"], ["up"])  # connected, the script loaded
    before = await reads_processed(redis)
    calls = [pipeline.run(script, [f"k{n}"], ["boom" if n % 7 == 3 else f"v{n}"]) for n in range(60)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    reads = await reads_processed(redis) - before - 1  # the INFO call itself is one read
    for n, result in enumerate(results):
        if n % 7 == 3:
            assert isinstance(result, ResponseError) and "boom" in str(result)
        else:
            assert result == [f"k{n}".encode(), f"v{n}".encode()]
    assert reads <= 3, f"60 calls of one loop turn took {reads} reads by the server"
    # One by one, each call is its own write: the batching above is not the server's doing.
    before = await reads_processed(redis)
    for n in range(10):
        await pipeline.run(script, [f"k{n}"], [f"again{n}"])
    assert await reads_processed(redis) - before - 1 >= 10


async def test_a_forgotten_script_is_loaded_again(redis: Redis) -> None:
    pipeline = ScriptPipeline(redis)
    script = redis.register_script(ECHO)
    assert await pipeline.run(script, ["a"], ["1"]) == [b"a", b"1"]
    await redis.script_flush()
    assert await asyncio.gather(pipeline.run(script, ["b"], ["2"]), pipeline.run(script, ["c"], ["3"])) == [
        [b"b", b"2"],
        [b"c", b"3"],
    ]


async def test_a_lost_connection_fails_the_waiting_calls_then_reconnects(redis_server: RedisServer) -> None:
    """Calls wait on a partitioned connection, which Redis then closes: every one fails with ConnectionError (none
    was executed), and the next call connects anew."""
    script_text = "return redis.call('INCR', KEYS[1])"
    with BlackHole(redis_server.port) as hole:
        async with (
            Redis.from_url(hole.url, socket_timeout=5, client_name="pipelined") as redis,
            Redis(port=redis_server.port, socket_timeout=2) as direct,
        ):
            await direct.delete("n")
            await direct.script_load(script_text)  # else its first call would load it on a second connection
            pipeline = ScriptPipeline(redis)
            script = redis.register_script(script_text)
            assert await pipeline.run(script, ["n"], []) == 1
            hole.partition()
            waiting = [asyncio.ensure_future(pipeline.run(script, ["n"], [])) for _ in range(5)]
            ours = [c for c in await direct.client_list() if c["name"] == "pipelined"]
            assert len(ours) == 1
            assert await direct.client_kill_filter(_id=ours[0]["id"]) == 1
            hole.heal()
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
            assert all(isinstance(o, RedisConnectionError) for o in outcomes), outcomes
            assert await direct.get("n") == b"1"  # none of them ran
            assert await pipeline.run(script, ["n"], []) == 2


async def test_a_silent_redis_times_out_every_waiting_call(redis_server: RedisServer) -> None:
    with BlackHole(redis_server.port) as hole:
        async with Redis.from_url(hole.url, socket_timeout=0.5, socket_connect_timeout=0.5) as redis:
            pipeline = ScriptPipeline(redis)
            script = redis.register_script(ECHO)
            assert await pipeline.run(script, ["t"], ["1"]) == [b"t", b"1"]
            hole.partition()
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(pipeline.run(script, ["t"], [str(n)]) for n in range(5)), return_exceptions=True
            )
            assert all(isinstance(o, RedisTimeoutError) for o in outcomes), outcomes
            assert time.monotonic() - started < 2.0
            hole.heal()
            assert await pipeline.run(script, ["t"], ["after"]) == [b"t", b"after"]
