"""Time to screen from real screens: headless Chromium shows flashes in a ``<breaking-ticker>`` (WebSocket), through
the browser client over SSE, and as a Web Push notification from the service worker, and each sends its receipt; the
editors' reach API then has every surface. Redis, a hub and a worker; the worker sends the Web Push to the fake push
service (which decrypts it as a browser would), and the test hands that payload to Chromium's service worker through
the DevTools protocol (``ServiceWorker.deliverPushMessage``), as the browser's push service would. The canary runs
all along, and no device is ever notified of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page

from ticker_service.push.vapid import generate

from .support.browser import ServiceWorkerPage
from .support.fakes.services import PushFakes
from .support.flashes import flash_id, publish
from .support.processes import TIMEOUT, Service, ServiceFactory

pytestmark = pytest.mark.asyncio(loop_scope="module")
WAIT_MS = TIMEOUT * 1000
FLASHES = 5


@pytest.fixture(scope="module")
def pushing(service_factory: ServiceFactory) -> Iterator[tuple[Service, PushFakes]]:
    tmp = service_factory.directory("reach-browser")
    pem, public = generate()
    fakes = PushFakes.start(tmp)
    fakes.webpush.vapid_public_key = public
    service = service_factory("redis", directory=tmp, TICKER_CANARY_SECONDS="1", **fakes.env(tmp, pem))
    try:
        yield service, fakes
    finally:
        service.stop()
        fakes.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser, pushing: tuple[Service, PushFakes]) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context()
    await context.grant_permissions(["notifications"], origin=pushing[0].base_url)
    yield context
    await context.close()


async def ws_page(context: BrowserContext, hub: Service) -> Page:
    """A page with one ``<breaking-ticker>`` whose every reader reports (``receipt-rate="1"``), live over WebSocket."""
    page = await context.new_page()
    await page.goto(f"{hub.base_url}/", timeout=WAIT_MS)
    await page.evaluate(
        """async () => {
          await import('/static/js/breaking-ticker.js');
          const bar = document.createElement('breaking-ticker');
          bar.id = 'measured';
          bar.setAttribute('receipt-rate', '1');
          document.body.append(bar);
        }"""
    )
    await page.wait_for_selector("#measured[state=live][transport=ws]", state="attached", timeout=WAIT_MS)
    return page


async def sse_page(context: BrowserContext, hub: Service) -> Page:
    """The browser client over Server-Sent Events, reporting every flash it receives."""
    page = await context.new_page()
    await page.goto(f"{hub.base_url}/", timeout=WAIT_MS)
    await page.evaluate(
        """async () => {
          const { connect } = await import('/static/js/ticker.js');
          const last = (await (await fetch('/v1/flashes?limit=1')).json()).last_event_id;
          window.live = new Promise((resolve) => {
            window.sse = connect({ transport: 'sse', receiptRate: 1, lastEventId: last, storage: null });
            window.sse.addEventListener('status', (e) => e.detail.state === 'live' && resolve());
          });
          await window.live;
        }"""
    )
    return page


async def push_page(context: BrowserContext, hub: Service) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """The service worker registered with every device reporting; returns a function that delivers a push to it."""
    device = await ServiceWorkerPage.open(context, hub.base_url, "/push-sw.js?receipt_rate=1")
    return device.deliver


async def pushed(fakes: PushFakes, address: str, fid: str) -> dict[str, Any]:
    """The payload the worker sent to this subscription for this flash, once the fake push service has it."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        for received in fakes.webpush.to(address):
            if received.body.get("flash_id") == fid:
                return received.body
        assert asyncio.get_running_loop().time() < deadline, f"no push for {fid}"
        await asyncio.sleep(0.01)


async def test_every_surface_reports_its_time_to_screen(
    context: BrowserContext, pushing: tuple[Service, PushFakes], client: httpx.AsyncClient
) -> None:
    """Five flashes, each shown by the WS bar, the SSE client and a Web Push notification: the reach API counts each
    surface's receipts with plausible latencies (printed: the figures docs/newsroom.md quotes)."""
    hub, fakes = pushing
    pages = [await ws_page(context, hub), await sse_page(context, hub)]
    deliver = await push_page(context, hub)
    sub = fakes.webpush.subscribe()
    device = await client.post(f"{hub.base_url}/v1/devices", json={"platform": "webpush", "subscription": sub})
    assert device.status_code == 201, device.text
    address = str(sub["endpoint"]).rsplit("/", 1)[-1]

    docs = []
    for n in range(FLASHES):
        doc = await publish(client, hub, f"BREAKING: time to screen {n}")
        docs.append(doc)
        await deliver(await pushed(fakes, address, flash_id(doc)))

    figures: dict[str, list[dict[str, Any]]] = {"ws": [], "sse": [], "webpush": []}
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    for doc in docs:
        while True:
            reach = (await client.get(f"{hub.base_url}/v1/flashes/{flash_id(doc)}/reach", headers=hub.headers())).json()
            rows = {r["surface"]: r for r in reach["versions"] if r["version"] == "1"}
            if all(surface in rows for surface in figures):
                break
            assert asyncio.get_running_loop().time() < deadline, reach
            await asyncio.sleep(0.05)
        for surface in figures:
            assert rows[surface]["receipts"] >= 1 and rows[surface]["readers"] >= rows[surface]["receipts"]
            assert 0 <= rows[surface]["p50"] < TIMEOUT, rows[surface]
            figures[surface].append(rows[surface])
    for surface, rows_ in figures.items():
        p50s = sorted(r["p50"] for r in rows_)
        print(f"time to screen, {surface}: per-flash p50 {p50s} s")
    for page in pages:
        await page.close()


async def test_the_canary_never_reaches_a_device(pushing: tuple[Service, PushFakes], client: httpx.AsyncClient) -> None:
    """Devices of every platform that take everything (any language, category and region, urgency up to 9: the
    canary's flash matches their filter) get real flashes, and never a canary's, round after round."""
    hub, fakes = pushing
    addresses = {}
    for platform in ("webpush", "fcm", "apns"):
        if platform == "webpush":
            sub = fakes.webpush.subscribe()
            body: dict[str, Any] = {"platform": platform, "subscription": sub, "max_urgency": 9}
            addresses[platform] = str(sub["endpoint"]).rsplit("/", 1)[-1]
        else:
            addresses[platform] = ("a" * 64) if platform == "apns" else "fcm-token-of-a-device-that-takes-everything"
            body = {"platform": platform, "token": addresses[platform], "max_urgency": 9}
        assert (await client.post(f"{hub.base_url}/v1/devices", json=body)).status_code == 201
    rounds = await canary_rounds(client, hub)
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while await canary_rounds(client, hub) < rounds + 3:  # three rounds read back with these devices registered
        assert asyncio.get_running_loop().time() < deadline, "the canary does not run"
        await asyncio.sleep(0.1)
    doc = await publish(client, hub, "BREAKING: after the canaries, for every device", urgency=4)
    for platform, address in addresses.items():
        fake = getattr(fakes, platform)
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not fake.to(address):
            assert asyncio.get_running_loop().time() < deadline, f"{platform} got nothing"
            await asyncio.sleep(0.02)
        got = [r.body for r in fake.to(address)]
        assert "canary-" not in json.dumps(got) and "ticker-canary" not in json.dumps(got), (platform, got)
        assert flash_id(doc) in json.dumps(got[0])


async def canary_rounds(client: httpx.AsyncClient, hub: Service) -> float:
    """Canary flashes read back so far (by this hub: the only one)."""
    for line in (await client.get(f"{hub.base_url}/metrics")).text.splitlines():
        if line.startswith("ticker_canary_latency_seconds_count "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
