"""One story, many languages in headless Chromium against a real embedded ``ticker run``: a ``<breaking-ticker>``
that prefers Arabic, then English, shows one version of each story and swaps it in place as versions come and go."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from .support.browser import client, page
from .support.flashes import flash_id, publish
from .support.processes import TIMEOUT, Service, ServiceFactory

__all__ = ["page", "client"]  # fixtures, from tests/support/browser.py

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = TIMEOUT * 1000
BAR = "breaking-ticker#preferring"


@pytest.fixture(scope="module")
def hub(service_factory: ServiceFactory) -> Service:
    return service_factory(name="stories-browser")


ADD_BAR = """() => {
    const bar = document.createElement("breaking-ticker");
    bar.id = "preferring";
    bar.setAttribute("lang", "ar,en");
    document.body.append(bar);
}"""


async def test_bar_shows_the_best_version_of_a_story_in_place(
    page: Page, hub: Service, client: httpx.AsyncClient
) -> None:
    """``<breaking-ticker lang="ar,en">``: en shows; ar takes its place (announced as news, not as a correction); ar
    withdrawn: en is back; reloaded, the list gives the same choice. The bar speaks Arabic, its first language."""
    await page.goto(f"{hub.base_url}/", timeout=WAIT_MS)
    await page.evaluate(ADD_BAR)
    bar = page.locator(BAR)
    await expect(bar).to_have_attribute("state", "live", timeout=WAIT_MS)
    await expect(bar).to_have_attribute("dir", "rtl")
    story = f"quake-{secrets.token_hex(4)}"
    en = await publish(client, hub, f"BREAKING: quake {story}", language="en", story=story)

    def shown(doc: dict[str, Any]) -> Locator:
        return page.locator(f'{BAR} li[data-id="{flash_id(doc)}"]')

    await expect(shown(en)).to_have_count(1, timeout=WAIT_MS)
    ar = await publish(client, hub, f"عاجل: زلزال {story}", language="ar", story=story)
    await expect(shown(ar)).to_have_count(1, timeout=WAIT_MS)
    await expect(shown(en)).to_have_count(0)
    await expect(bar.locator("div[aria-live]")).to_have_text(f"خبر عاجل: {ar['headlines'][0]['value']}")
    response = await client.delete(f"{hub.base_url}/v1/flashes/{flash_id(ar)}", headers=hub.headers())
    assert response.status_code == 200
    await expect(shown(en)).to_have_count(1, timeout=WAIT_MS)
    await expect(shown(ar)).to_have_count(0)

    await page.reload()
    await page.evaluate(ADD_BAR)
    await expect(bar).to_have_attribute("state", "live", timeout=WAIT_MS)
    await expect(shown(en)).to_have_count(1, timeout=WAIT_MS)
    await expect(bar.locator("li")).not_to_have_count(0)


async def test_client_over_sse_hands_replaces_to_the_page(page: Page, hub: Service, client: httpx.AsyncClient) -> None:
    """The browser client over SSE (Chromium's EventSource) with ``lang: ["ar", "en"]``: the update's detail has
    the better version and ``replaces``."""
    await page.goto(f"{hub.base_url}/", timeout=WAIT_MS)
    await page.evaluate(
        """async () => {
            const { connect } = await import("/static/js/ticker.js");
            window.seen = [];
            const ticker = connect({ lang: ["ar", "en"], transport: "sse", storage: null });
            for (const type of ["flash", "update"]) {
                ticker.addEventListener(type, (e) => {
                    window.seen.push([type, e.detail.flash.uri, e.detail.replaces ?? null]);
                });
            }
            await new Promise((resolve) => {
                ticker.addEventListener("status", (e) => e.detail.state === "live" && resolve());
            });
        }"""
    )
    story = f"quake-{secrets.token_hex(4)}"
    en = await publish(client, hub, f"BREAKING: quake {story}", language="en", story=story)
    ar = await publish(client, hub, f"عاجل: زلزال {story}", language="ar", story=story)
    await page.wait_for_function("window.seen.length >= 2", timeout=WAIT_MS)
    assert await page.evaluate("window.seen") == [["flash", en["uri"], None], ["update", ar["uri"], en["uri"]]]
