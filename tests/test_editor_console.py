"""The editor console at /editor in headless Chromium against a real embedded ``ticker run``: sign in, publish
(urgency 1 asks first), field errors from the API, correct and withdraw, a wrong token; keyboard and axe-core."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from .support.browser import axe_violations, open_page
from .support.flashes import flash_id, publish
from .support.processes import TIMEOUT, Service, ServiceFactory

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = TIMEOUT * 1000


@pytest.fixture(scope="module")
def hub(service_factory: ServiceFactory) -> Service:
    return service_factory(name="editor")


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, hub: Service) -> AsyncIterator[Page]:
    async with open_page(browser) as (page, errors):
        await page.goto(f"{hub.base_url}/editor", timeout=WAIT_MS)
        yield page
        # The browser logs a failed fetch (401, 422) as a console error; those are the API's answers under test.
        assert [e for e in errors if "status of 4" not in e] == [], errors


async def current(hub: Service) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await client.get(f"{hub.base_url}/v1/flashes?limit=200")
    assert response.status_code == 200
    return response.json()["flashes"]  # type: ignore[no-any-return]


def headlines(docs: list[dict[str, Any]]) -> list[str]:
    return [d["headlines"][0]["value"] for d in docs]


async def sign_in(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#sign-in-button")
    await expect(page.locator("#signed-in")).to_be_visible()
    assert await page.locator("#token").input_value() == ""  # not left in the field


async def test_wrong_token_shows_an_error_next_to_the_token_and_publishes_nothing(page: Page, hub: Service) -> None:
    headline = f"Never published {uuid.uuid4().hex[:8]}"
    await sign_in(page, "tkr_not-a-real-token")
    await page.fill("#headline", headline)
    await page.click("#publish")
    await expect(page.locator("#error-token")).to_contain_text("valid editor token", timeout=WAIT_MS)
    await expect(page.locator("#token")).to_have_attribute("aria-invalid", "true")
    assert headline not in headlines(await current(hub))
    assert await page.locator("#latest tbody tr", has_text=headline).count() == 0
    assert "tkr_" not in page.url


async def test_publish_with_keyboard_confirming_urgency_one(page: Page, hub: Service) -> None:
    headline = f"FLASH: keyboard published {uuid.uuid4().hex[:8]}"
    await page.focus("#token")
    await page.keyboard.type(hub.token)
    await page.keyboard.press("Enter")
    await expect(page.locator("#signed-in")).to_be_visible()
    await page.focus("#headline")
    await page.keyboard.type(headline)
    await expect(page.locator("#headline-count")).to_have_text(f"{len(headline)} / 280 characters")
    # The preview shows the bar as readers will see it.
    await expect(page.locator("#preview [part~=headline]")).to_have_text(headline)
    await page.select_option("#urgency", "1")
    await page.focus("#headline")

    # Urgency 1 asks first; cancelling publishes nothing.
    await page.keyboard.press("Control+Enter")
    await expect(page.locator("#confirm")).to_be_visible()
    await expect(page.locator("#confirm-text")).to_contain_text(headline)
    await page.keyboard.press("Escape")
    await expect(page.locator("#confirm")).to_be_hidden()
    assert headline not in headlines(await current(hub))

    await page.keyboard.press("Control+Enter")
    await expect(page.locator("#confirm")).to_be_visible()
    await expect(page.locator("#confirm-no")).to_be_focused()  # the safe choice is the default
    await page.keyboard.press("Shift+Tab")
    await expect(page.locator("#confirm-yes")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#form-done")).to_contain_text(headline, timeout=WAIT_MS)
    docs = [d for d in await current(hub) if d["headlines"][0]["value"] == headline]
    assert len(docs) == 1 and docs[0]["urgency"] == 1
    row = page.locator(f'#latest tbody tr[data-id="{flash_id(docs[0])}"]')
    await expect(row.locator(".status")).to_have_text("published", timeout=WAIT_MS)


async def test_api_field_errors_are_shown_next_to_their_field(page: Page, hub: Service) -> None:
    await sign_in(page, hub.token)
    await page.fill("#headline", "A flash with a bad link")
    await page.fill("#url", "ftp://files.example/story")
    # The preview makes no link of a non-http(s) URL either.
    await expect(page.locator("#preview [part~=headline]")).to_have_text("A flash with a bad link")
    assert await page.locator("#preview a").count() == 0
    await page.fill("#language", "not a language")
    await page.click("#publish")
    await expect(page.locator("#error-url")).to_contain_text("http", timeout=WAIT_MS)
    await expect(page.locator("#error-language")).to_contain_text("BCP 47")
    await expect(page.locator("#url")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#error-headline")).to_have_text("")
    assert "A flash with a bad link" not in headlines(await current(hub))


async def test_correct_and_withdraw_through_the_console(page: Page, hub: Service) -> None:
    headline, corrected = f"Take one {uuid.uuid4().hex[:8]}", f"Take two {uuid.uuid4().hex[:8]}"
    await sign_in(page, hub.token)
    await page.fill("#headline", headline)
    await page.check('input[name=regions][value="europe"]')
    await page.click("#publish")
    await expect(page.locator("#form-done")).to_contain_text(headline, timeout=WAIT_MS)
    doc = next(d for d in await current(hub) if d["headlines"][0]["value"] == headline)
    assert [p["literal"] for p in doc["places"]] == ["europe"]
    row = page.locator(f'#latest tbody tr[data-id="{flash_id(doc)}"]')

    await row.get_by_role("button", name="Correct").click()
    await row.get_by_label("Corrected headline").fill(corrected)
    await row.get_by_role("button", name="Save correction").click()
    await expect(row.locator(".status")).to_have_text("corrected (v2)", timeout=WAIT_MS)
    await expect(row.locator("td").first).to_have_text(corrected)
    now = next(d for d in await current(hub) if flash_id(d) == flash_id(doc))
    assert now["version"] == "2" and now["headlines"][0]["value"] == corrected

    await row.get_by_role("button", name="Withdraw").click()
    await expect(page.locator("#confirm-text")).to_contain_text(corrected)
    await page.click("#confirm-yes")
    await expect(row.locator(".status")).to_have_text("withdrawn", timeout=WAIT_MS)
    assert flash_id(doc) not in {flash_id(d) for d in await current(hub)}
    assert await row.get_by_role("button").count() == 0


async def test_console_has_no_serious_accessibility_violations(browser: Browser, hub: Service) -> None:
    async with open_page(browser, bypass_csp=True) as (page, _):
        await page.goto(f"{hub.base_url}/editor", timeout=WAIT_MS)
        await page.fill("#headline", "Preview for the scan")
        await expect(page.locator("#preview [part~=headline]")).to_have_text("Preview for the scan")
        assert await axe_violations(page) == []


async def test_changes_made_elsewhere_show_in_the_latest_flashes_live(page: Page, hub: Service) -> None:
    """Another editor (here the API directly) publishes and withdraws: the console's table follows.

    (No wait for the console to connect: it follows the stream from its snapshot's last_event_id, so a flash
    published in between is replayed to it.)"""
    headline = f"From another desk {uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        doc = await publish(client, hub, headline, urgency=4)
        row = page.locator(f'#latest tbody tr[data-id="{flash_id(doc)}"]')
        await expect(row.locator(".status")).to_have_text("published", timeout=WAIT_MS)
        response = await client.delete(f"{hub.base_url}/v1/flashes/{flash_id(doc)}", headers=hub.headers())
        assert response.status_code == 200
    await expect(row.locator(".status")).to_have_text("withdrawn", timeout=WAIT_MS)


async def test_publish_form_names_the_story_and_keeps_it_for_the_next_language(page: Page, hub: Service) -> None:
    """The story field goes out as ``story`` (ninjs ``events``) and stays filled for the next language version."""
    story = f"quake-{uuid.uuid4().hex[:8]}"
    await sign_in(page, hub.token)
    await page.fill("#headline", f"Earthquake {story}")
    await page.fill("#story", story)
    await page.click("#publish")
    await expect(page.locator("#form-done")).to_contain_text(f"story {story}", timeout=WAIT_MS)
    await expect(page.locator("#story")).to_have_value(story)
    docs = [d for d in await current(hub) if d.get("events") == [{"id": story}]]
    assert headlines(docs) == [f"Earthquake {story}"]


async def test_each_flash_shows_its_reach(page: Page, hub: Service) -> None:
    """Readers' display receipts (here sent as the browser client sends them) show beside the flash: readers seen,
    estimated from the sample, and the p90 time to screen."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        doc = await publish(client, hub, f"Seen by a sample {uuid.uuid4().hex[:8]}", urgency=4)
        shown = datetime.fromisoformat(doc["versionCreated"]) + timedelta(milliseconds=800)
        for _ in range(3):
            body = {"flash": flash_id(doc), "version": "1", "surface": "ws", "rate": 0.1}
            body["shown_at"] = shown.isoformat().replace("+00:00", "Z")
            response = await client.post(f"{hub.base_url}/v1/receipts", content=json.dumps(body))
            assert response.status_code == 415  # a body without its type is refused ...
            response = await client.post(
                f"{hub.base_url}/v1/receipts", content=json.dumps(body), headers={"Content-Type": "text/plain"}
            )
            assert response.status_code == 204, response.text  # ... and counted as a beacon's text/plain
    await sign_in(page, hub.token)
    row = page.locator(f'#latest tbody tr[data-id="{flash_id(doc)}"]')
    # The sketch's quantiles are within 1 %: 792–808 ms.
    await expect(row.locator(".reach")).to_have_text(
        re.compile(r"^seen by 30 readers; p90 (79[2-9]|80[0-8]) ms$"), timeout=WAIT_MS
    )
