"""The demo page in headless Chromium against a real embedded ``ticker run``: live flashes, no HTML injection,
corrections and withdrawals. Debian's /usr/bin/chromium is driven by Playwright; no browser is downloaded."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Locator, Page, async_playwright, expect

from .conftest import start_embedded
from .support import TIMEOUT, Service, flash_id, publish

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_WITHIN_MS = 2000
WAIT_MS = TIMEOUT * 1000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_embedded(tmp_path_factory.mktemp("demo"))
    yield service
    service.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: scripts/setup --test installs Debian's chromium"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context; uncaught script errors on it fail the test."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def console(msg: ConsoleMessage) -> None:
        # Chromium asks for /favicon.ico on its own; the service has none.
        if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico"):
            errors.append(f"{msg.text} ({msg.location.get('url')})")

    page.on("console", console)
    yield page
    await context.close()
    assert errors == [], errors


@pytest_asyncio.fixture(loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


async def open_live(page: Page, demo: Service) -> None:
    """Open the demo page and wait until it follows the WebSocket."""
    await page.goto(f"{demo.base_url}/", timeout=WAIT_MS)
    await expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)


def item(page: Page, doc: dict[str, Any]) -> Locator:
    return page.locator(f'#flashes li[data-id="{flash_id(doc)}"]')


def unique(headline: str) -> str:
    return f"{headline} {uuid.uuid4().hex[:8]}"


async def test_published_flash_appears_in_the_bar_within_two_seconds(
    page: Page, demo: Service, client: httpx.AsyncClient
) -> None:
    await open_live(page, demo)
    headline = unique("BREAKING: live in the bar")
    posted = time.monotonic()
    doc = await publish(client, demo, headline)
    left_ms = LIVE_WITHIN_MS - (time.monotonic() - posted) * 1000
    assert left_ms > 0, "the POST alone took longer than the budget"
    await expect(item(page, doc)).to_have_text(headline, timeout=left_ms)
    assert time.monotonic() - posted <= LIVE_WITHIN_MS / 1000
    assert await page.locator("#flashes li").first.text_content() == headline  # newest first


async def test_headline_with_markup_is_shown_as_text(page: Page, demo: Service, client: httpx.AsyncClient) -> None:
    headline = "BREAKING: <img src=x onerror=window.__xss=1> " + uuid.uuid4().hex[:8]

    async def check(doc: dict[str, Any]) -> None:
        li = item(page, doc)
        await expect(li).to_have_count(1, timeout=WAIT_MS)
        assert await li.text_content() == headline
        assert await page.locator("#flashes img").count() == 0
        assert await page.evaluate("() => typeof window.__xss") == "undefined"

    await open_live(page, demo)
    doc = await publish(client, demo, headline)
    await check(doc)  # arrived over the WebSocket
    await page.reload()
    await expect(page.locator("#status")).to_have_text("live", timeout=WAIT_MS)
    await check(doc)  # loaded with GET /v1/flashes


async def test_withdrawal_removes_and_correction_replaces_in_place(
    page: Page, demo: Service, client: httpx.AsyncClient
) -> None:
    await open_live(page, demo)
    first_take, corrected = unique("BREAKING: first take"), unique("BREAKING: corrected take")
    kept = await publish(client, demo, first_take)
    withdrawn = await publish(client, demo, unique("BREAKING: to be withdrawn"))
    await expect(item(page, withdrawn)).to_have_count(1, timeout=WAIT_MS)
    await expect(item(page, kept)).to_have_text(first_take, timeout=WAIT_MS)
    count = await page.locator("#flashes li").count()
    ids = await page.locator("#flashes li").evaluate_all("items => items.map((li) => li.dataset.id)")
    kept_node = await item(page, kept).element_handle()

    response = await client.delete(f"{demo.base_url}/v1/flashes/{flash_id(withdrawn)}", headers=demo.headers())
    assert response.status_code == 200, response.text
    await expect(item(page, withdrawn)).to_have_count(0, timeout=WAIT_MS)
    assert await page.locator("#flashes li").count() == count - 1

    response = await client.patch(
        f"{demo.base_url}/v1/flashes/{flash_id(kept)}", json={"headline": corrected}, headers=demo.headers()
    )
    assert response.status_code == 200, response.text
    await expect(item(page, kept).locator(".corrected")).to_have_count(1, timeout=WAIT_MS)
    assert await item(page, kept).text_content() == corrected + "(corrected)"
    assert await page.locator("#flashes li").count() == count - 1
    # The same list item, at the same place: corrected in place, not added again.
    assert await kept_node.evaluate("(li) => li.isConnected && li.parentElement.id === 'flashes'")
    ids_after = await page.locator("#flashes li").evaluate_all("items => items.map((li) => li.dataset.id)")
    assert ids_after == [i for i in ids if i != flash_id(withdrawn)]
