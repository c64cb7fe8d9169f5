"""The shared request-head deadline: one timer ends every late connection, and only late ones, each on time."""

from __future__ import annotations

import asyncio
import time

from ticker_service.transports.native.deadline import Deadlines

TIMEOUT = 0.2


class Connection:
    def __init__(self, ended: asyncio.Queue[tuple[Connection, float]]) -> None:
        self.ended = ended

    def too_slow(self) -> None:
        self.ended.put_nowait((self, time.monotonic()))


async def test_late_connections_end_in_order_at_their_own_deadline() -> None:
    ended: asyncio.Queue[tuple[Connection, float]] = asyncio.Queue()
    deadlines = Deadlines(TIMEOUT)
    first, done_in_time, second = Connection(ended), Connection(ended), Connection(ended)
    started = time.monotonic()
    deadlines.add(first)
    deadlines.add(done_in_time)
    await asyncio.sleep(TIMEOUT / 2)  # the second connection arrives half a timeout later
    second_started = time.monotonic()
    deadlines.add(second)
    deadlines.discard(done_in_time)

    late, at = await asyncio.wait_for(ended.get(), 5)
    assert late is first and at - started >= TIMEOUT * 0.99
    assert ended.empty() and len(deadlines) == 1  # the second one's time is not up yet
    late, at = await asyncio.wait_for(ended.get(), 5)
    assert late is second and at - second_started >= TIMEOUT * 0.99
    assert len(deadlines) == 0 and ended.empty()


async def test_a_connection_done_in_time_is_never_ended() -> None:
    ended: asyncio.Queue[tuple[Connection, float]] = asyncio.Queue()
    deadlines = Deadlines(TIMEOUT)
    quick, slow = Connection(ended), Connection(ended)
    deadlines.add(quick)
    deadlines.discard(quick)
    deadlines.discard(quick)  # twice (it ended in time, then was lost): no harm
    deadlines.add(slow)
    late, _ = await asyncio.wait_for(ended.get(), 5)
    assert late is slow and ended.empty()
