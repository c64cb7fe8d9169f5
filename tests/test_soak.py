"""Soak: churn for a long while and watch the hub's memory and open files stay flat.

Not in the default run. Run it with:

    .venv/bin/pytest -m soak -s tests/test_soak.py            # 20 minutes
    TICKER_SOAK_SECONDS=120 .venv/bin/pytest -m soak -s tests/test_soak.py
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import httpx
import pytest
from ticker_client import TickerClient

from .support.flashes import publish
from .support.processes import start_distributed

SECONDS = float(os.environ.get("TICKER_SOAK_SECONDS", "1200"))


def rss_and_fds(pid: int) -> tuple[int, int]:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE"), len(os.listdir(f"/proc/{pid}/fd"))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, units per hour."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points) or 1.0
    return sum((x - mx) * (y - my) for x, y in points) / var * 3600


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 300)
async def test_hub_memory_and_files_stay_flat_under_churn(tmp_path: Path) -> None:
    # A small window of recent events, so that it is full after the warm-up and any growth left is a leak.
    service = start_distributed(tmp_path, TICKER_REPLAY_MAX_EVENTS="100")
    rng = random.Random(7)
    try:
        hub = service.processes[0].proc
        assert hub is not None
        samples: list[tuple[float, int, int]] = []
        deadline = time.monotonic() + SECONDS

        async def churn_reader(n: int) -> None:
            while time.monotonic() < deadline:
                transport = "ws" if n % 2 else "sse"
                async with TickerClient(service.base_url, transport=transport) as client:  # type: ignore[arg-type]
                    stay = time.monotonic() + rng.uniform(1, 20)
                    async for _ in client:
                        if time.monotonic() > stay:
                            break

        async def flashes() -> None:
            async with httpx.AsyncClient() as client:
                n = 0
                while time.monotonic() < deadline:
                    await publish(client, service, f"soak {n}")
                    n += 1
                    await asyncio.sleep(1)

        async def sampler() -> None:
            start = time.monotonic()
            while time.monotonic() < deadline:
                rss, fds = rss_and_fds(hub.pid)
                samples.append((time.monotonic() - start, rss, fds))
                await asyncio.sleep(5)

        tasks = [asyncio.create_task(churn_reader(i)) for i in range(100)]
        await asyncio.gather(flashes(), sampler())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        service.stop()
    settled = samples[len(samples) // 4 :]  # after warm-up
    rss_slope = slope([(t, r / 1024 / 1024) for t, r, _ in settled])
    fd_slope = slope([(t, f) for t, _, f in settled])
    print(
        f"\nsoak {SECONDS:.0f}s: hub RSS {settled[0][1] / 2**20:.1f} → {settled[-1][1] / 2**20:.1f} MiB "
        f"(slope {rss_slope:+.2f} MiB/h), open files {settled[0][2]} → {settled[-1][2]} (slope {fd_slope:+.2f}/h)"
    )
    assert rss_slope < 20, "hub memory keeps growing"
    assert fd_slope < 50, "hub leaks file descriptors"
