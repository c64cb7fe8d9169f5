"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright (no browser is
downloaded), kept off the network, and pages whose uncaught errors are collected so that tests can fail on them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, CDPSession, ConsoleMessage, Page, async_playwright

from .processes import ROOT, TIMEOUT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--metrics-recording-only",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
OUTPUT = ROOT / "build" / "test-output"


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: scripts/setup --test installs Debian's chromium"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class PageErrors(list[str]):
    """Uncaught errors and console errors of a page; Chromium's own favicon request is not one."""

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda error: self.append(str(error)))
        page.on("console", self._console)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.location.get("url", "").endswith("/favicon.ico"):
            self.append(f"{msg.text} ({msg.location.get('url')})")


@contextlib.asynccontextmanager
async def open_page(browser: Browser, **context_options: Any) -> AsyncIterator[tuple[Page, PageErrors]]:
    context = await browser.new_context(**context_options)
    page = await context.new_page()
    errors = PageErrors()
    errors.watch(page)
    try:
        yield page, errors
    finally:
        await context.close()


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page (its context must bypass CSP to inject axe)."""
    assert AXE.exists(), f"{AXE} is missing: scripts/setup --test runs npm ci"
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("async () => JSON.stringify(await axe.run(document, {resultTypes: ['violations']}))")
    violations: list[dict[str, Any]] = json.loads(result)["violations"]
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]


# Fixtures for a module whose tests and browser run in the module's event loop (``loop_scope="module"``): import
# them into the module (and name them in its ``__all__``) to use them there instead of the conftest's.


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A page in a fresh browser context; uncaught script errors on it fail the test."""
    async with open_page(browser) as (page, errors):
        yield page
        assert errors == [], errors


@pytest_asyncio.fixture(loop_scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The shared ``client``, in the module's event loop, where the module's tests and the browser run."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


# The notifications the page's service worker shows, as title and tag.
NOTIFICATIONS = """async () => (await (await navigator.serviceWorker.ready).getNotifications())
  .map((n) => ({title: n.title, tag: n.tag}))"""


class ServiceWorkerPage:
    """Chromium with the service worker registered on the hub's page, counting the ``ticker:push-handled``
    messages it posts; what the push service (the fake) accepted for the browser's subscription is handed to the
    worker as a push over the DevTools protocol, as the browser's push service would."""

    def __init__(self, page: Page, cdp: CDPSession, registration_id: str, origin: str) -> None:
        self.page, self.cdp, self.registration_id, self.origin = page, cdp, registration_id, origin
        self.delivered = 0

    @classmethod
    async def open(cls, context: BrowserContext, origin: str, worker: str = "/push-sw.js") -> ServiceWorkerPage:
        page = await context.new_page()
        await page.goto(f"{origin}/", timeout=TIMEOUT * 1000)
        await page.add_script_tag(url="/push.js")
        cdp = await context.new_cdp_session(page)
        registrations: list[dict[str, Any]] = []
        cdp.on("ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"]))
        await cdp.send("ServiceWorker.enable")
        await page.evaluate(
            """async (worker) => {
              window.__handled = [];
              navigator.serviceWorker.addEventListener('message', (e) => {
                if (e.data && e.data.type === 'ticker:push-handled') window.__handled.push(e.data);
              });
              await TickerPush.register(worker);
            }""",
            worker,
        )
        await page.wait_for_function("() => navigator.serviceWorker.controller !== null", timeout=TIMEOUT * 1000)
        deadline = time.monotonic() + TIMEOUT
        while not any(r["scopeURL"] == f"{origin}/" for r in registrations):
            if time.monotonic() > deadline:
                raise TimeoutError("timed out waiting for the worker's registration")
            await asyncio.sleep(0.02)
        registration = next(r for r in registrations if r["scopeURL"] == f"{origin}/" and not r.get("isDeleted"))
        return cls(page, cdp, registration["registrationId"], origin)

    async def deliver(self, message: dict[str, Any]) -> None:
        """Push ``message`` to the worker and wait until it has handled it."""
        await self.cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": self.origin, "registrationId": self.registration_id, "data": json.dumps(message)},
        )
        self.delivered += 1
        await self.page.wait_for_function(f"() => window.__handled.length >= {self.delivered}", timeout=TIMEOUT * 1000)

    async def relay(self, messages: list[dict[str, Any]]) -> None:
        """Deliver the messages not delivered yet, each after the worker handled the one before."""
        for message in messages[self.delivered :]:
            await self.deliver(message)

    async def notifications(self) -> list[dict[str, str]]:
        shown: list[dict[str, str]] = await self.page.evaluate(NOTIFICATIONS)
        return shown
