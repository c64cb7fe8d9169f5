"""SIGTERM on a hub: WebSocket readers get close 1012 (service restart), SSE streams end, the process exits."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
import websockets

from .support.processes import start_embedded
from .support.readers import sse_reader, ws_reader


async def test_sigterm_closes_readers_so_they_reconnect_elsewhere(tmp_path: Path) -> None:
    service = start_embedded(tmp_path)
    try:
        process = service.processes[0].proc
        assert process is not None
        async with ws_reader(service, "lang=en") as ws, sse_reader(service, "lang=en") as sse:
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            with pytest.raises(EOFError):
                await sse.next_event(timeout=10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012
        assert "retry=" in closed.value.rcvd.reason  # a jittered reconnect hint
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught.
        assert await asyncio.to_thread(process.wait, 10) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10
    finally:
        service.stop()


async def test_sigterm_stops_the_worker_cleanly_and_nothing_is_lost(tmp_path: Path) -> None:
    """The worker exits on SIGTERM within the bound; flashes queued while no worker runs go out with the next."""
    import httpx

    from .support.flashes import publish
    from .support.processes import start_distributed, start_worker
    from .support.readers import next_ws_event

    service = start_distributed(tmp_path)
    try:
        worker = service.processes[1].proc
        assert worker is not None
        started = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 15) == 0
        assert time.monotonic() - started < 11
        async with httpx.AsyncClient() as client, ws_reader(service) as ws:
            doc = await publish(client, service, "queued while no worker ran")
            start_worker(service, tmp_path, "worker-2")
            assert (await next_ws_event(ws, timeout=15))["flash"]["uri"] == doc["uri"]
    finally:
        service.stop()
