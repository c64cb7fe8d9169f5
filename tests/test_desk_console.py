"""The desk in the editor console (/editor, headless Chromium, a real embedded ``ticker run`` with
TICKER_FLASH_APPROVAL=1): the publish form says a FLASH waits for a second editor, another editor approves or
rejects it from the list of pending ones; an embargo from the form; hold and release from the latest flashes."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from .support.browser import axe_violations, open_page
from .support.flashes import flash_id
from .support.processes import TIMEOUT, Service, ServiceFactory, create_token

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = TIMEOUT * 1000


@pytest.fixture(scope="module")
def hub(service_factory: ServiceFactory) -> Service:
    return service_factory(name="desk-console", TICKER_FLASH_APPROVAL="1")


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser, hub: Service) -> AsyncIterator[Page]:
    async with open_page(browser, bypass_csp=True) as (page, errors):  # axe-core is injected
        await page.goto(f"{hub.base_url}/editor", timeout=WAIT_MS)
        yield page
        assert [e for e in errors if "status of 4" not in e] == [], errors


async def sign_in(page: Page, token: str) -> None:
    if await page.locator("#sign-out").is_visible():
        await page.click("#sign-out")
    await page.fill("#token", token)
    await page.click("#sign-in-button")
    await expect(page.locator("#signed-in")).to_be_visible()


async def public(hub: Service) -> list[str]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        docs = (await client.get(f"{hub.base_url}/v1/flashes?limit=200")).json()["flashes"]
    return [d["headlines"][0]["value"] for d in docs]


async def publish_flash(page: Page, headline: str) -> None:
    await page.fill("#headline", headline)
    await page.select_option("#urgency", "1")
    await page.click("#publish")
    await page.click("#confirm-yes")


async def test_a_flash_waits_then_a_second_editor_approves_or_rejects_it(page: Page, hub: Service) -> None:
    chief = create_token(hub.env, "chief", "publish", "approve")
    deputy = create_token(hub.env, "deputy", "approve")
    approved, rejected = f"FLASH: to approve {uuid.uuid4().hex[:6]}", f"FLASH: to reject {uuid.uuid4().hex[:6]}"
    await sign_in(page, chief)
    await publish_flash(page, approved)
    await expect(page.locator("#form-done")).to_contain_text("Waiting for a second editor's approval", timeout=WAIT_MS)
    await publish_flash(page, rejected)
    await expect(page.locator("#form-done")).to_contain_text(rejected, timeout=WAIT_MS)
    assert approved not in await public(hub)
    # The one who asked may not approve: the refusal shows beside the list.
    mine = page.locator("#pending tbody tr", has_text=approved)
    await expect(mine.locator("td").nth(2)).to_have_text("chief", timeout=WAIT_MS)
    await mine.get_by_role("button", name=re.compile("^Approve")).click()
    await page.click("#confirm-yes")
    await expect(page.locator("#pending-error")).to_contain_text("second editor", timeout=WAIT_MS)

    await sign_in(page, deputy)
    row = page.locator("#pending tbody tr", has_text=approved)
    await row.get_by_role("button", name=re.compile("^Approve")).click()
    await expect(page.locator("#confirm-text")).to_contain_text(approved)
    await page.click("#confirm-yes")
    await expect(row).to_have_count(0, timeout=WAIT_MS)
    assert approved in await public(hub)
    other = page.locator("#pending tbody tr", has_text=rejected)
    await other.get_by_role("button", name=re.compile("^Reject")).click()
    await page.click("#confirm-yes")
    await expect(other).to_have_count(0, timeout=WAIT_MS)
    await expect(page.locator("#pending-empty")).to_be_visible()
    assert rejected not in await public(hub)
    assert await axe_violations(page) == []


async def test_embargo_hold_and_release_from_the_console(page: Page, hub: Service) -> None:
    headline = f"Scheduled from the form {uuid.uuid4().hex[:6]}"
    await sign_in(page, hub.token)
    await page.fill("#headline", headline)
    later = (datetime.now() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    await page.fill("#embargo", later)
    await page.click("#publish")
    await expect(page.locator("#form-done")).to_contain_text("Scheduled for", timeout=WAIT_MS)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        scheduled = (await client.get(f"{hub.base_url}/v1/flashes?status=scheduled", headers=hub.headers())).json()
    doc = next(d for d in scheduled["flashes"] if d["headlines"][0]["value"] == headline)
    assert (
        abs(datetime.fromisoformat(doc["embargoedUntil"]).timestamp() - datetime.fromisoformat(later).timestamp()) < 1
    )
    row = page.locator(f'#latest tbody tr[data-id="{flash_id(doc)}"]')
    await expect(row.locator(".status")).to_have_text("scheduled")
    await expect(row.get_by_role("button", name=re.compile("^Hold"))).to_have_count(0)
    await row.get_by_role("button", name=re.compile("^Cancel")).click()
    await expect(page.locator("#confirm-text")).to_contain_text("never published")
    await page.click("#confirm-yes")
    await expect(row.locator(".status")).to_have_text("withdrawn", timeout=WAIT_MS)
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        scheduled = (await client.get(f"{hub.base_url}/v1/flashes?status=scheduled", headers=hub.headers())).json()
        assert flash_id(doc) not in [r["flash"] for r in scheduled["requests"]]
        # One scheduled elsewhere (the API, another editor) shows up in the table too.
        body = {"headline": f"Scheduled elsewhere {uuid.uuid4().hex[:6]}", "language": "en", "category": "politics"}
        body["embargo"] = (datetime.now().astimezone() + timedelta(hours=1)).isoformat()
        other = (await client.post(f"{hub.base_url}/v1/flashes", json=body, headers=hub.headers())).json()
    elsewhere = page.locator(f'#latest tbody tr[data-id="{flash_id(other)}"]')
    await expect(elsewhere.locator(".status")).to_have_text("scheduled", timeout=WAIT_MS)

    live = f"Published then held {uuid.uuid4().hex[:6]}"
    await page.fill("#headline", live)
    await page.click("#publish")
    await expect(page.locator("#form-done")).to_contain_text(f"Published: {live}", timeout=WAIT_MS)
    row = page.locator("#latest tbody tr", has_text=live)
    await row.get_by_role("button", name=re.compile("^Hold")).click()
    await expect(row.locator(".status")).to_have_text("on hold", timeout=WAIT_MS)
    assert live not in await public(hub)
    await row.get_by_role("button", name=re.compile("^Release")).click()
    await expect(row.locator(".status")).to_have_text("corrected (v3)", timeout=WAIT_MS)
    assert live in await public(hub)
