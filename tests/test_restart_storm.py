"""A hub restarted under its readers: every one reconnects at once with its last event id, gets what it missed
while the hub was down exactly once and in order, then the live flashes (the storm of ``python -m bench storm``,
small)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import websockets

from .support.flashes import publish
from .support.processes import TIMEOUT, Process, Service, start_distributed, start_hub, ticker, wait_ready

READERS = 300
MISSED = 3
SLOW = 6 * TIMEOUT  # 300 readers connecting twice on a loaded 2-core machine: a bound for failures, not a target


async def wait_attached(service: Service, count: int) -> None:
    """Until the hub reports ``count`` readers."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        deadline = time.monotonic() + SLOW
        while (await client.get(f"{service.base_url}/readyz")).json().get("readers") != count:
            assert time.monotonic() < deadline, f"the hub never had {count} readers"
            await asyncio.sleep(0.05)


async def test_a_restarted_hub_resumes_every_reader_and_loses_nothing(tmp_path: Path) -> None:
    service = start_distributed(tmp_path)
    try:
        # Editors post to a second hub, so that flashes can be published while the readers' hub is down.
        editors_url, _ = start_hub(service, tmp_path, "editors")
        editors = dataclasses.replace(service, base_url=editors_url)
        readers_hub = service.processes[0]
        assert readers_hub.proc is not None
        port = urlsplit(service.base_url).port
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            since = (await client.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
            everyone_resumed, everyone_has_first = asyncio.Event(), asyncio.Event()
            resumed = have_first = 0
            live_sent = asyncio.Event()

            async def reader() -> tuple[list[str], int, list[str]]:
                """One reader: the flash before the restart, the close code, then every flash after it."""
                nonlocal resumed, have_first
                url = f"{service.ws_url}/v1/stream?lang=en&last_event_id={since}"
                async with websockets.connect(url, open_timeout=SLOW) as ws:
                    first = json.loads(await asyncio.wait_for(ws.recv(), SLOW))
                    have_first += 1
                    if have_first == READERS:
                        everyone_has_first.set()
                    try:
                        await asyncio.wait_for(ws.recv(), SLOW)
                    except websockets.ConnectionClosed as closed:
                        code = closed.rcvd.code if closed.rcvd is not None else 0
                last = first["event_id"]
                deadline = time.monotonic() + SLOW
                while True:  # at once, and again while the port refuses (the hub is not back yet)
                    try:
                        ws = await websockets.connect(
                            f"{service.ws_url}/v1/stream?lang=en&last_event_id={last}", open_timeout=SLOW
                        )
                        break
                    except OSError:
                        assert time.monotonic() < deadline, "the restarted hub never accepted the reader"
                        await asyncio.sleep(0.05)
                async with ws:
                    after = [json.loads(await asyncio.wait_for(ws.recv(), SLOW)) for _ in range(MISSED)]
                    resumed += 1
                    if resumed == READERS:
                        everyone_resumed.set()
                    await live_sent.wait()
                    after += [json.loads(await asyncio.wait_for(ws.recv(), SLOW)) for _ in range(2)]
                return [first["flash"]["uri"]], code, [event["flash"]["uri"] for event in after]

            tasks = [asyncio.create_task(reader()) for _ in range(READERS)]
            await wait_attached(service, READERS)
            before = await publish(client, editors, "restart: before", language="en")
            await asyncio.wait_for(everyone_has_first.wait(), SLOW)  # it went through the worker to hub A
            readers_hub.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(readers_hub.proc.wait, TIMEOUT) in (0, -signal.SIGTERM)
            missed = [await publish(client, editors, f"restart: missed {i}", language="en") for i in range(MISSED)]
            again = Process(ticker("hub", "--port", str(port)), service.env, tmp_path / "hub-again.log")
            service.processes.append(again)
            again.start()
            wait_ready(service.base_url, again)
            await asyncio.wait_for(everyone_resumed.wait(), SLOW)
            live = [await publish(client, editors, f"restart: live {i}", language="en") for i in range(2)]
            live_sent.set()
            results = await asyncio.wait_for(asyncio.gather(*tasks), SLOW)
    finally:
        service.stop()
    expected_after = [doc["uri"] for doc in missed + live]
    for first, code, after in results:
        assert first == [before["uri"]]
        assert code == 1012  # service restart: resume by event id
        assert after == expected_after  # what it missed, once and in order, then the live flashes with no repeat
