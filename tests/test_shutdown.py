"""SIGTERM on a hub: WebSocket readers get close 1012 (service restart), SSE streams end, the process exits."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
import websockets

from .conftest import start_embedded
from .support import sse_reader, ws_reader


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
