"""The push service worker and subscribe helper in headless Chromium (Debian's /usr/bin/chromium via Playwright),
served by a real hub; pushes are delivered through the DevTools protocol (``ServiceWorker.deliverPushMessage``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, CDPSession, Page

from ticker_service.keys import DEVICE_PREFIX as DEVICE
from ticker_service.push.vapid import generate

from .support.devices import subscription
from .support.processes import TIMEOUT, Service, ServiceFactory, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")
WAIT_MS = TIMEOUT * 1000
NOTIFICATIONS = """async () => (await (await navigator.serviceWorker.ready).getNotifications())
  .map((n) => ({title: n.title, tag: n.tag, dir: n.dir, lang: n.lang}))"""


@pytest.fixture(scope="module")
def hub(service_factory: ServiceFactory) -> Service:
    pem, _ = generate()
    return service_factory("redis", name="push-browser", TICKER_PUSH_VAPID_PRIVATE_KEY=pem)


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser, hub: Service) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context()
    await context.grant_permissions(["notifications"], origin=hub.base_url)
    yield context
    await context.close()


async def open_page(context: BrowserContext, hub: Service) -> Page:
    """The demo page with push.js loaded, the service worker registered, and push-handled messages recorded."""
    page = await context.new_page()
    await page.goto(f"{hub.base_url}/", timeout=WAIT_MS)
    await page.add_script_tag(url="/push.js")
    await page.evaluate(
        """async () => {
          window.__handled = [];
          navigator.serviceWorker.addEventListener('message', (e) => {
            if (e.data && e.data.type === 'ticker:push-handled') window.__handled.push(e.data);
          });
          await TickerPush.register();
        }"""
    )
    return page


async def push_sender(context: BrowserContext, page: Page, hub: Service) -> Any:
    """A function that delivers a push to the page's service worker and waits until the worker has handled it."""
    cdp: CDPSession = await context.new_cdp_session(page)
    registrations: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"]))
    await cdp.send("ServiceWorker.enable")
    scope = f"{hub.base_url}/"
    await page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=WAIT_MS)
    registration = next(r for r in registrations if r["scopeURL"] == scope and not r.get("isDeleted"))

    async def deliver(message: dict[str, Any]) -> dict[str, Any]:
        count = await page.evaluate("() => window.__handled.length")
        await cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": hub.base_url, "registrationId": registration["registrationId"], "data": json.dumps(message)},
        )
        await page.wait_for_function(f"() => window.__handled.length > {count}", timeout=WAIT_MS)
        handled: dict[str, Any] = await page.evaluate("() => window.__handled[window.__handled.length - 1]")
        return handled

    return deliver


def message(
    flash_id: str, kind: str = "flash", headline: str = "BREAKING: in the browser", **extra: str
) -> dict[str, Any]:
    return {
        "type": kind,
        "flash_id": flash_id,
        "version": "1",
        "headline": headline,
        "lang": "en",
        "dir": "ltr",
        "urgency": "1",
        **extra,
    }


async def test_delivered_push_shows_a_notification(context: BrowserContext, hub: Service) -> None:
    """A push shows a notification titled with the headline, tagged with the flash id, in the flash's direction."""
    page = await open_page(context, hub)
    deliver = await push_sender(context, page, hub)
    handled = await deliver(message("f1", headline="عاجل: <b>خبر</b>", lang="ar", dir="rtl"))
    assert handled["shown"] is False
    notes = await page.evaluate(NOTIFICATIONS)
    assert notes == [{"title": "عاجل: <b>خبر</b>", "tag": "f1", "dir": "rtl", "lang": "ar"}]


async def test_page_showing_the_flash_gets_no_notification(context: BrowserContext, hub: Service) -> None:
    """When an open page already shows the flash, the service worker asks it and shows nothing."""
    page = await open_page(context, hub)
    deliver = await push_sender(context, page, hub)
    await page.evaluate(
        "() => { const li = document.createElement('li'); li.dataset.id = 'f2'; document.body.append(li) }"
    )
    handled = await deliver(message("f2"))
    assert handled["shown"] is True
    assert [n["tag"] for n in await page.evaluate(NOTIFICATIONS)] == []
    await deliver(message("f3"))
    assert [n["tag"] for n in await page.evaluate(NOTIFICATIONS)] == ["f3"]


async def test_correction_replaces_and_withdrawal_closes(context: BrowserContext, hub: Service) -> None:
    page = await open_page(context, hub)
    deliver = await push_sender(context, page, hub)
    await deliver(message("f4"))
    await deliver(message("f4", kind="update", headline="BREAKING: corrected"))
    assert [(n["tag"], n["title"]) for n in await page.evaluate(NOTIFICATIONS)] == [("f4", "BREAKING: corrected")]
    await deliver(message("f4", kind="withdraw"))
    assert await page.evaluate(NOTIFICATIONS) == []


async def test_subscribe_button_registers_through_the_api(context: BrowserContext, hub: Service) -> None:
    """The button registers the browser's subscription with /v1/devices, then updates the same device.

    Headless Chromium has no push service to subscribe with, so ``pushManager.subscribe`` is the one browser call
    replaced here: it returns a subscription shaped as Chromium's ``toJSON()``; the rest runs as shipped."""
    page = await open_page(context, hub)
    sub = subscription()
    await page.evaluate(
        """(sub) => { PushManager.prototype.subscribe = async () => ({ toJSON: () => sub });
          const b = document.createElement('button'); b.id = 'alerts'; document.body.append(b);
          TickerPush.attach(b, { filter: { lang: 'en', max_urgency: 3 } }); }""",
        sub,
    )
    button = page.locator("#alerts")
    assert await button.text_content() == "Get breaking alerts"
    await button.click()
    await page.wait_for_function("() => document.getElementById('alerts').textContent === 'Breaking alerts on'")
    stored = json.loads(await page.evaluate("() => localStorage.getItem('ticker-push-device')"))
    assert hub.redis is not None
    with hub.redis.client() as redis:
        record = json.loads(redis.hget(DEVICE + stored["id"], "d"))
        assert record["address"] == sub["endpoint"] and record["filter"]["max_urgency"] == "3"
        devices_before = len(redis.keys(DEVICE + "*"))
        await page.evaluate("() => TickerPush.subscribe({ filter: { lang: 'fr' } })")
        wait_until(lambda: json.loads(redis.hget(DEVICE + stored["id"], "d"))["filter"].get("lang") == "fr", "PUT")
        assert len(redis.keys(DEVICE + "*")) == devices_before
