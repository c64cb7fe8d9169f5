"""The browser client through a proxy that refuses WebSocket upgrades, and through a hub restart: headless
Chromium against a real Redis, ``ticker hub`` and ``ticker worker``."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from .support.browser import client, open_page
from .support.flashes import flash_id, publish
from .support.processes import TIMEOUT, Process, Service, ServiceFactory, start_hub, ticker, wait_ready

__all__ = ["client"]  # fixtures, from tests/support/browser.py

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = TIMEOUT * 1000
# After a hub restart the client's backoff (full jitter, capped at 20 s) decides when it is back.
RECONNECT_MS = 30_000
EN = "breaking-ticker[lang=en]"
NEWS_SITE = "http://localhost:9/news"


class UpgradeRefusingProxy:
    """A reverse proxy like the ones that break WebSocket: plain HTTP (SSE included) passes, upgrades get a 403."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refused = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"\r\nupgrade: websocket" in head.lower():
                self.refused += 1
                writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            sink.close()


@pytest.fixture(scope="module")
def stack(service_factory: ServiceFactory) -> tuple[Service, str, Path]:
    """Redis, the readers' hub (``base_url``), a worker, and a second hub that takes the editors' API."""
    service = service_factory("redis", name="resilience")
    assert service.directory is not None
    api_url, _ = start_hub(service, service.directory, "api-hub")
    return service, api_url, service.directory


async def record_events(page: Page) -> None:
    """Keep every event the English bar receives, in order, on the page."""
    await page.evaluate(
        """(selector) => {
            window.received = [];
            const bar = document.querySelector(selector);
            for (const type of ["flash", "update", "withdraw", "reset"]) {
                bar.addEventListener(type, (e) => window.received.push([type, e.detail.eventId,
                    e.detail.flash ? e.detail.flash.uri : null]));
            }
        }""",
        EN,
    )


async def test_websocket_refused_by_a_proxy_falls_back_to_sse_and_still_receives(
    browser: Browser, stack: tuple[Service, str, Path], client: httpx.AsyncClient
) -> None:
    service, api_url, _ = stack
    proxy = UpgradeRefusingProxy(int(service.base_url.rsplit(":", 1)[1]))
    base = await proxy.start()
    try:
        async with open_page(browser) as (page, errors):
            await page.goto(f"{base}/", timeout=WAIT_MS)
            bar = page.locator(EN)
            await expect(bar).to_have_attribute("state", "live", timeout=WAIT_MS)
            await expect(bar).to_have_attribute("transport", "sse")
            assert proxy.refused >= 1
            api = Service(service.mode, api_url, service.token, service.env)
            doc = await publish(client, api, "BREAKING: over Server-Sent Events", urgency=2)
            await expect(bar.locator(f'li[data-id="{flash_id(doc)}"] [part~=headline]')).to_have_text(
                "BREAKING: over Server-Sent Events", timeout=WAIT_MS
            )
            # The refused upgrades are logged by the browser; nothing else went wrong.
            assert [e for e in errors if "WebSocket" not in e] == [], errors
    finally:
        await proxy.close()


async def test_hub_killed_and_restarted_while_five_flashes_are_posted_page_shows_each_once_in_order(
    browser: Browser, stack: tuple[Service, str, Path], client: httpx.AsyncClient
) -> None:
    service, api_url, tmp = stack
    api = Service(service.mode, api_url, service.token, service.env)
    hub = service.processes[0]
    assert hub.proc is not None
    port = service.base_url.rsplit(":", 1)[1]
    async with open_page(browser) as (page, errors):
        await page.goto(f"{service.base_url}/", timeout=WAIT_MS)
        bar = page.locator(EN)
        await expect(bar).to_have_attribute("state", "live", timeout=WAIT_MS)
        await record_events(page)
        before = await publish(client, api, "BREAKING: before the restart", urgency=3)
        await expect(bar.locator(f'li[data-id="{flash_id(before)}"]')).to_have_count(1, timeout=WAIT_MS)

        hub.proc.kill()
        hub.proc.wait(timeout=TIMEOUT)
        await expect(bar).not_to_have_attribute("state", "live", timeout=WAIT_MS)
        docs = [await publish(client, api, f"BREAKING: during the outage #{n}", urgency=3) for n in range(1, 6)]
        restarted = Process(ticker("hub", "--port", port), service.env, tmp / "hub-restarted.log")
        restarted.start()
        service.processes[0] = restarted
        await asyncio.to_thread(wait_ready, service.base_url, restarted)

        ids = [flash_id(d) for d in docs]
        items = bar.locator("li")
        await expect(bar.locator(f'li[data-id="{ids[-1]}"]')).to_have_count(1, timeout=RECONNECT_MS)
        await expect(bar).to_have_attribute("state", "live")
        shown = await items.evaluate_all("lis => lis.map((li) => li.dataset.id)")
        assert shown[:6] == [*reversed(ids), flash_id(before)], "newest first, each once"
        assert len(shown) == len(set(shown))
        received = await page.evaluate("window.received")
        assert [uri for _, _, uri in received] == [before["uri"], *(d["uri"] for d in docs)]
        assert {kind for kind, _, _ in received} == {"flash"}
        assert [e for e in errors if "WebSocket" not in e and "ERR_" not in e] == [], errors


async def test_one_tag_on_a_page_of_another_origin_works_even_where_websocket_is_refused(
    browser: Browser, stack: tuple[Service, str, Path], client: httpx.AsyncClient
) -> None:
    """A news site's page (another origin) loads the module, the current flashes and the SSE stream cross-origin."""
    service, api_url, _ = stack
    proxy = UpgradeRefusingProxy(int(service.base_url.rsplit(":", 1)[1]))
    hub = await proxy.start()
    api = Service(service.mode, api_url, service.token, service.env)
    earlier = await publish(client, api, "BREAKING: already on the bar", urgency=3)
    site = (
        "<!doctype html><html lang='en'><head><title>News</title>"
        f"<script type='module' src='{hub}/static/js/breaking-ticker.js'></script></head>"
        "<body><main><breaking-ticker lang='en'></breaking-ticker></main></body></html>"
    )
    try:
        # localhost is another origin than the hub's 127.0.0.1. Chromium asks the reader before a site reaches
        # the loopback network (Local Network Access), which a news site reaching a public hub never needs: grant it.
        async with open_page(browser, permissions=["local-network-access"]) as (page, errors):
            await page.route(NEWS_SITE, lambda route: route.fulfill(body=site, content_type="text/html"))
            await page.goto(NEWS_SITE, timeout=WAIT_MS)
            bar = page.locator(EN)
            await expect(bar.locator(f'li[data-id="{flash_id(earlier)}"]')).to_have_count(1, timeout=WAIT_MS)
            await expect(bar).to_have_attribute("state", "live", timeout=WAIT_MS)
            await expect(bar).to_have_attribute("transport", "sse")
            doc = await publish(client, api, "BREAKING: live on another origin", urgency=2)
            await expect(bar.locator(f'li[data-id="{flash_id(doc)}"]')).to_have_count(1, timeout=WAIT_MS)
            assert [e for e in errors if "WebSocket" not in e] == [], errors
    finally:
        await proxy.close()
