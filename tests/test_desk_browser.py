"""The desk in headless Chromium against a real embedded ``ticker run``: ``<breaking-ticker>`` hides a held flash
(or greys it out with ``held="dim"``) and brings it back on release."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Page, expect

from .support.browser import client, page
from .support.flashes import flash_id, publish
from .support.processes import TIMEOUT, Service, ServiceFactory

__all__ = ["page", "client"]  # fixtures, from tests/support/browser.py

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = TIMEOUT * 1000


@pytest.fixture(scope="module")
def desk(service_factory: ServiceFactory) -> Service:
    return service_factory(name="desk-browser")


async def test_breaking_ticker_hides_a_held_flash_or_dims_it(
    page: Page, desk: Service, client: httpx.AsyncClient
) -> None:
    await page.goto(f"{desk.base_url}/", timeout=WAIT_MS)
    await page.evaluate(
        """() => {
            for (const [id, held] of [["hide", null], ["dim", "dim"]]) {
                const bar = document.createElement("breaking-ticker");
                bar.id = id;
                bar.setAttribute("lang", "pl");
                if (held) bar.setAttribute("held", held);
                document.body.append(bar);
            }
        }"""
    )
    for bar in ("#hide", "#dim"):
        await expect(page.locator(bar)).to_have_attribute("state", "live", timeout=WAIT_MS)
    doc = await publish(client, desk, "Wstrzymane: dane do sprawdzenia", language="pl")
    fid = flash_id(doc)
    hide, dim = page.locator(f'#hide li[data-id="{fid}"]'), page.locator(f'#dim li[data-id="{fid}"]')
    await expect(hide).to_have_count(1, timeout=WAIT_MS)
    await expect(dim).to_have_count(1, timeout=WAIT_MS)

    held = await client.post(f"{desk.base_url}/v1/flashes/{fid}/hold", headers=desk.headers())
    assert held.status_code == 200, held.text
    await expect(hide).to_have_count(0, timeout=WAIT_MS)
    await expect(dim).to_have_attribute("part", "item flash held", timeout=WAIT_MS)
    await expect(dim.locator("[part~=on-hold]")).to_have_text("(on hold)")
    color = await dim.evaluate("li => getComputedStyle(li).color")
    assert color == "rgb(228, 228, 228)"  # greyed, still readable on the red bar

    released = await client.post(f"{desk.base_url}/v1/flashes/{fid}/release", headers=desk.headers())
    assert released.status_code == 200, released.text
    await expect(hide).to_have_count(1, timeout=WAIT_MS)
    await expect(dim).to_have_attribute("part", "item flash", timeout=WAIT_MS)
    await expect(dim.locator("[part~=on-hold]")).to_have_count(0)
