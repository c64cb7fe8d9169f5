"""The operations page in headless Chromium against real processes: two hubs and a worker on one Redis. An admin
token sees readers, flashes and latency change as readers connect and flashes go out; any other token is refused.
Debian's /usr/bin/chromium is driven by Playwright; no browser is downloaded."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from .support.flashes import publish
from .support.processes import (
    TIMEOUT,
    Service,
    ServiceFactory,
    create_token,
    run_ticker,
    start_embedded,
    start_hub,
    start_worker,
)
from .support.readers import next_ws_event, sse_reader, ws_reader

pytestmark = pytest.mark.asyncio(loop_scope="module")
WAIT_MS = TIMEOUT * 1000


@dataclasses.dataclass
class Ops:
    service: Service
    second: Service  # the same service through the second hub
    admin_token: str
    tmp: Path


@pytest.fixture(scope="module")
def ops(service_factory: ServiceFactory) -> Ops:
    service = service_factory("redis", name="admin")
    tmp = service.directory
    assert tmp is not None
    second_url, _ = start_hub(service, tmp, "hub2")
    token = create_token(service.env, "ops", "admin")
    return Ops(service, dataclasses.replace(service, base_url=second_url), token, tmp)


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page; a script error or a Content Security Policy violation on it fails the test."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def console(msg: ConsoleMessage) -> None:
        if "Content Security Policy" in msg.text:
            errors.append(msg.text)

    page.on("console", console)
    yield page
    await context.close()
    assert errors == [], errors


async def sign_in(page: Page, service: Service, token: str) -> None:
    response = await page.goto(f"{service.base_url}/admin", timeout=WAIT_MS)
    assert response is not None and response.ok
    assert "script-src 'self'" in response.headers["content-security-policy"]
    await page.fill("#token", token)
    await page.click("#signin button")


async def until_texts(page: Page, selector: str, expected: list[str]) -> None:
    """Wait until the texts of ``selector``'s elements, in any order, are ``expected``."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while sorted(await page.locator(selector).all_text_contents()) != expected:
        assert asyncio.get_running_loop().time() < deadline, await page.locator(selector).all_text_contents()
        await asyncio.sleep(0.05)


async def test_admin_sees_readers_flashes_and_latency_change(page: Page, ops: Ops) -> None:
    service = ops.service
    await sign_in(page, service, ops.admin_token)
    await expect(page.locator("#dashboard")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#readers-total")).to_have_text("0", timeout=WAIT_MS)
    await expect(page.locator("#redis-status")).to_have_text("ok")
    await expect(page.locator("#hubs tr")).to_have_count(2, timeout=WAIT_MS)  # both hub processes report
    await expect(page.locator("#workers tr")).to_have_count(1, timeout=WAIT_MS)
    # The token is nowhere in the page once signed in (kept in the script's memory only).
    assert await page.locator("#token").input_value() == ""

    async with (
        ws_reader(service, "lang=en") as ws1,
        ws_reader(service, "lang=en") as ws2,
        sse_reader(ops.second, "lang=ar"),
    ):
        await expect(page.locator("#readers-total")).to_have_text("3", timeout=WAIT_MS)
        await expect(page.locator("#readers-transports tr", has_text="websocket")).to_have_text("websocket2")
        await expect(page.locator("#readers-transports tr", has_text="sse")).to_have_text("sse1")
        await expect(page.locator("#readers-languages tr", has_text="en")).to_have_text("en2")
        # One hub process holds both WebSockets, the other the SSE reader.
        await until_texts(page, "#hubs tr td:nth-child(2)", ["1", "2"])

        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            doc = await publish(client, service, "BREAKING: <b>operations</b> see this", language="en")
            audit = await client.get(
                f"{service.base_url}/v1/audit", headers={"Authorization": f"Bearer {ops.admin_token}"}
            )
        for ws in (ws1, ws2):
            assert (await next_ws_event(ws))["flash"]["uri"] == doc["uri"]
        await expect(page.locator("#flashes-per-minute")).to_have_text("1", timeout=WAIT_MS)
        await expect(page.locator("#latency-p50")).to_have_text(re.compile(r"^\d+(\.\d+)?$"), timeout=WAIT_MS)
        await expect(page.locator("#latency-chart")).to_have_attribute("data-points", re.compile(r"^([2-9]|\d\d)$"))
        await expect(page.locator("#workers tr")).to_contain_text("1 ok", timeout=WAIT_MS)
        # The audit log belongs to the security work: shown when the service has it, else said to be missing.
        if audit.status_code == 404:
            await expect(page.locator("#audit")).to_have_text("audit log unavailable", timeout=WAIT_MS)
        else:
            assert audit.status_code == 200
            await expect(page.locator("#audit li").first).not_to_have_text("audit log unavailable", timeout=WAIT_MS)
        assert await page.locator("b").count() == 0  # whatever the server says is text, never markup

    await expect(page.locator("#readers-total")).to_have_text("0", timeout=WAIT_MS)


async def test_a_stopped_worker_leaves_the_page(page: Page, ops: Ops) -> None:
    await sign_in(page, ops.service, ops.admin_token)
    await expect(page.locator("#workers tr")).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator("#workers")).not_to_contain_text("no worker")
    worker = next(p for p in ops.service.processes if "worker" in p.args)
    await asyncio.to_thread(worker.stop)
    await expect(page.locator("#workers")).to_contain_text("no worker is reporting", timeout=WAIT_MS)
    start_worker(ops.service, ops.tmp)  # for the tests after this one
    await expect(page.locator("#workers")).not_to_contain_text("no worker", timeout=WAIT_MS)


async def test_non_admin_token_is_refused(page: Page, ops: Ops) -> None:
    service = ops.service
    await sign_in(page, service, service.token)
    await expect(page.locator("#signin-error")).to_contain_text("403", timeout=WAIT_MS)
    await expect(page.locator("#dashboard")).to_be_hidden()
    await sign_in(page, service, "tkr_" + "x" * 32)
    await expect(page.locator("#signin-error")).to_contain_text("401", timeout=WAIT_MS)
    async with httpx.AsyncClient(base_url=service.base_url, timeout=TIMEOUT) as client:
        assert (await client.get("/v1/admin/stats")).status_code == 401
        assert (await client.get("/v1/admin/stats", headers=service.headers())).status_code == 403
        allowed = await client.get("/v1/admin/stats", headers={"Authorization": f"Bearer {ops.admin_token}"})
        assert allowed.status_code == 200
        assert allowed.json()["mode"] == "redis"


async def test_embedded_mode_reports_its_one_process(tmp_path: Path) -> None:
    service = start_embedded(tmp_path)
    try:
        created = run_ticker(service.env, "token", "create", "--name", "ops", "--scopes", "admin")
        assert created.returncode == 0, created.stderr
        admin = {"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"}
        async with (
            httpx.AsyncClient(base_url=service.base_url, timeout=TIMEOUT) as client,
            sse_reader(service, "lang=es"),
        ):
            await publish(client, service, "BREAKING: embedded", language="es")
            stats = (await client.get("/v1/admin/stats", headers=admin)).json()
    finally:
        service.stop()
    assert stats["mode"] == "embedded" and stats["redis"] == {"status": "embedded"}
    assert stats["readers"] == {"total": 1, "transports": {"sse": 1}, "languages": {"es": 1}}
    assert [hub["readers"]["total"] for hub in stats["hubs"]] == [1]
    assert stats["flashes_per_minute"] == 1 and stats["workers"] == []


async def test_the_page_shows_the_last_hour_of_time_to_screen(page: Page, ops: Ops) -> None:
    """Receipts sent to both hubs add up on the page, per surface and in all (WS 0.2 s, SSE 0.4 s)."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        doc = await publish(client, ops.service, "BREAKING: how fast was it seen")
        for base, surface, seconds in (
            (ops.service.base_url, "ws", 0.2),
            (ops.second.base_url, "ws", 0.2),
            (ops.second.base_url, "sse", 0.4),
        ):
            shown = (datetime.fromisoformat(doc["versionCreated"]) + timedelta(seconds=seconds)).isoformat()
            body = {"flash": doc["uri"].rsplit(":", 1)[-1], "version": "1", "surface": surface, "shown_at": shown}
            assert (await client.post(f"{base}/v1/receipts", json=body)).status_code == 204
    await sign_in(page, ops.service, ops.admin_token)
    table = page.locator("#time-to-screen")
    await expect(table.locator("tr", has_text="sse")).to_have_text(
        re.compile(r"^sse11(0\.39\d|0\.40\d|0\.4)"), timeout=WAIT_MS
    )
    await expect(table.locator("tr", has_text="ws")).to_have_text(
        re.compile(r"^ws22(0\.19\d|0\.20\d|0\.2)"), timeout=WAIT_MS
    )
    await expect(table.locator("tr", has_text="all")).to_have_text(re.compile(r"^all33"), timeout=WAIT_MS)
