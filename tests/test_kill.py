"""Kill everywhere: a withdrawn flash leaves every surface a reader or a device shows it on.

One end-to-end run in the distributed mode (real Redis, ``ticker hub``, ``ticker worker``, the FCM/APNs/Web Push
fakes over TLS + HTTP/2, headless Chromium with the service worker): a flash is published, and a WebSocket reader,
an SSE reader, a resuming reader, a reader resuming from a lost history (``reset``), ``GET /v1/flashes``, a phone on
FCM and one on APNs and the browser's notification all show it; it is withdrawn, and none shows it any more, and a
reader resuming from before it gets the withdrawal, never the flash. The readers' part runs in the embedded mode
too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext

from ticker_service.push.vapid import generate

from .support.browser import ServiceWorkerPage
from .support.fakes.services import PushFakes
from .support.fakes.shade import apns_shade, fcm_shade
from .support.flashes import flash_body, flash_id
from .support.processes import TIMEOUT, Service, ServiceFactory
from .support.readers import SSEReader, sse_reader, ws_reader

pytestmark = pytest.mark.asyncio(loop_scope="module")
PUSH_TIMEOUT = max(TIMEOUT, 30.0)  # push goes through the worker's jobs and the fakes, on a loaded machine
OTHER_EPOCH = "zzzz-1-0"  # an event id from a history this service never had: the reader gets a ``reset``


async def until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``check`` without blocking the loop (the readers and the browser keep running meanwhile)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Screen:
    """What a ticker shows, from the events it got, applied as the clients apply them."""

    shown: dict[str, str] = field(default_factory=dict)  # flash id -> headline
    events: list[tuple[str, str]] = field(default_factory=list)  # (type, flash id or "") in arrival order

    def apply(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "reset":
            self.shown = {flash_id(d): d["headlines"][0]["value"] for d in payload["flashes"]}
            self.events.append((kind, ""))
            return
        fid = flash_id(payload)
        self.events.append((kind, fid))
        if kind == "withdraw":
            self.shown.pop(fid, None)
        else:
            self.shown[fid] = payload["headlines"][0]["value"]


@contextlib.asynccontextmanager
async def watching_ws(service: Service, query: str = "", **kwargs: Any) -> AsyncIterator[Screen]:
    screen = Screen()
    async with ws_reader(service, query, **kwargs) as ws:

        async def pump() -> None:
            async for raw in ws:
                message = json.loads(raw)
                screen.apply(message["type"], message if message["type"] == "reset" else message["flash"])

        async with _running(pump()):
            yield screen


@contextlib.asynccontextmanager
async def watching_sse(service: Service, query: str = "", **kwargs: Any) -> AsyncIterator[Screen]:
    screen = Screen()
    async with sse_reader(service, query, **kwargs) as sse:

        async def pump(reader: SSEReader) -> None:
            while True:
                event = await reader.next_event(timeout=3600)
                screen.apply(event["event"], event["flash"])

        async with _running(pump(sse)):
            yield screen


@contextlib.asynccontextmanager
async def _running(work: Awaitable[None]) -> AsyncIterator[None]:
    task = asyncio.ensure_future(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task  # a reader that failed shows up as a check above that timed out


async def last_event_id(client: httpx.AsyncClient, service: Service) -> str:
    return str((await client.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"])


async def listed(client: httpx.AsyncClient, service: Service) -> list[str]:
    response = await client.get(f"{service.base_url}/v1/flashes?limit=100")
    assert response.status_code == 200
    return [flash_id(d) for d in response.json()["flashes"]]


async def replay_from(service: Service, after: str, until_type: str, fid: str) -> Screen:
    """A reader that resumes from ``after`` and reads until it has the ``until_type`` event of ``fid``."""
    async with watching_ws(service, f"last_event_id={after}", from_now=False) as screen:
        await until(lambda: (until_type, fid) in screen.events, f"{until_type} of {fid} in the replay")
    return screen


class Readers:
    """The live readers of the run: WebSocket, SSE, and one that resumed from before the flash."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stack = contextlib.AsyncExitStack()
        self.screens: dict[str, Screen] = {}

    async def connect(self) -> None:
        self.screens["ws"] = await self.stack.enter_async_context(watching_ws(self.service))
        self.screens["sse"] = await self.stack.enter_async_context(watching_sse(self.service))

    async def resume(self, after: str) -> None:
        """An SSE reader coming back with ``Last-Event-ID`` from before the flash: the replay brings it."""
        headers = {"Last-Event-ID": after}
        self.screens["resumed"] = await self.stack.enter_async_context(watching_sse(self.service, headers=headers))

    async def wait(self, check: Callable[[Screen], bool], what: str) -> None:
        for name, screen in self.screens.items():
            await until(lambda s=screen: check(s), f"the {name} reader: {what}")


async def kill_on_readers(
    service: Service,
    client: httpx.AsyncClient,
    language: str,
    published: Callable[[str], Awaitable[None]] | None = None,
    withdrawn: Callable[[str], Awaitable[None]] | None = None,
) -> str:
    """Publish, see it on every reader surface, withdraw, see it gone from each; the push and browser checks of
    the distributed run go in through ``published`` and ``withdrawn``. Returns the flash id."""
    before = await last_event_id(client, service)
    readers = Readers(service)
    async with readers.stack:
        await readers.connect()
        body = flash_body(f"BREAKING: {secrets.token_hex(4)} to be killed", language=language, urgency=1)
        response = await client.post(f"{service.base_url}/v1/flashes", json=body, headers=service.headers())
        assert response.status_code == 201, response.text
        fid, headline = flash_id(response.json()), body["headline"]
        await readers.resume(before)
        await readers.wait(lambda s: s.shown.get(fid) == headline, "shows the flash")
        assert fid in await listed(client, service)
        reset = await replay_from(service, OTHER_EPOCH, "reset", "")
        assert reset.shown.get(fid) == headline, "the reset snapshot has the flash"
        if published is not None:
            await published(fid)

        response = await client.delete(f"{service.base_url}/v1/flashes/{fid}", headers=service.headers())
        assert response.status_code == 200 and response.json()["pubStatus"] == "canceled"
        await readers.wait(lambda s: fid not in s.shown, "no longer shows the flash")
        for name, screen in readers.screens.items():
            assert screen.events.count(("withdraw", fid)) == 1, name
        assert fid not in await listed(client, service)
        reset = await replay_from(service, OTHER_EPOCH, "reset", "")
        assert fid not in reset.shown, "the reset snapshot has no withdrawn flash"
        late = await replay_from(service, before, "withdraw", fid)
        assert ("flash", fid) not in late.events and fid not in late.shown, "a resume never replays a killed flash"
        if withdrawn is not None:
            await withdrawn(fid)
    return fid


# -- the distributed run: readers, phones on the fakes, and the browser's service worker ---------------------------
@dataclass
class Setup:
    service: Service
    fakes: PushFakes


@pytest.fixture(scope="module")
def distributed(service_factory: ServiceFactory) -> Iterator[Setup]:
    tmp = service_factory.directory("kill")
    pem, public = generate()
    fakes = PushFakes.start(tmp)
    fakes.webpush.vapid_public_key = public
    service = service_factory("redis", directory=tmp, **fakes.env(tmp, pem))
    try:
        yield Setup(service, fakes)
    finally:
        service.stop()
        fakes.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser, distributed: Setup) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context()
    await context.grant_permissions(["notifications"], origin=distributed.service.base_url)
    yield context
    await context.close()


async def test_a_kill_reaches_every_surface(
    distributed: Setup, context: BrowserContext, client: httpx.AsyncClient
) -> None:
    """Published: every reader, the list, the reset snapshot, an FCM and an APNs phone and the browser show it.
    Withdrawn: none does; the phones' and the browser's notifications are removed by collapse id / tag."""
    service, fakes = distributed.service, distributed.fakes
    subscription = fakes.webpush.subscribe()
    sub_id = str(subscription["endpoint"]).rsplit("/", 1)[-1]
    apns_token, fcm_token = secrets.token_hex(32), f"fcm-{secrets.token_urlsafe(40)}"
    for device in (
        {"platform": "apns", "token": apns_token},
        {"platform": "fcm", "token": fcm_token},
        {"platform": "webpush", "subscription": subscription},
    ):
        response = await client.post(f"{service.base_url}/v1/devices", json={**device, "lang": "fr"})
        assert response.status_code == 201, response.text
    # The hub's page shows the en, ar and es tickers: a French flash is not on it, so the worker notifies.
    browser = await ServiceWorkerPage.open(context, service.base_url)

    def browser_messages() -> list[dict[str, Any]]:
        return [m.body for m in fakes.webpush.to(sub_id)]

    async def published(fid: str) -> None:
        await until(lambda: fid in apns_shade(fakes.apns.to(apns_token)), "the APNs phone's notification", PUSH_TIMEOUT)
        await until(lambda: fid in fcm_shade(fakes.fcm.to(fcm_token)), "the FCM phone's notification", PUSH_TIMEOUT)
        await until(lambda: len(fakes.webpush.to(sub_id)) == 1, "the browser's push", PUSH_TIMEOUT)
        await browser.relay(browser_messages())
        assert [n["tag"] for n in await browser.notifications()] == [fid]

    async def withdrawn(fid: str) -> None:
        await until(lambda: apns_shade(fakes.apns.to(apns_token)) == {}, "the APNs notification removed", PUSH_TIMEOUT)
        await until(lambda: fcm_shade(fakes.fcm.to(fcm_token)) == {}, "the FCM notification removed", PUSH_TIMEOUT)
        await until(lambda: len(fakes.webpush.to(sub_id)) == 2, "the browser's withdrawal push", PUSH_TIMEOUT)
        await browser.relay(browser_messages())
        assert await browser.notifications() == []
        kill = fakes.apns.to(apns_token)[-1]
        assert kill.headers["apns-push-type"] == "background" and kill.headers["apns-collapse-id"] == fid
        assert kill.body["ticker"] == {**kill.body["ticker"], "type": "withdraw", "collapse_id": fid}
        fcm_kill = fakes.fcm.to(fcm_token)[-1].body
        assert fcm_kill["android"]["collapse_key"] == fid and "notification" not in fcm_kill
        assert fcm_kill["apns"]["headers"]["apns-collapse-id"] == fid
        assert [m.headers["topic"] for m in fakes.webpush.to(sub_id)] == [fid, fid]

    await kill_on_readers(service, client, "fr", published, withdrawn)
    assert [m["type"] for m in browser_messages()] == ["flash", "withdraw"]


async def test_a_kill_reaches_every_reader_embedded(service_factory: ServiceFactory, client: httpx.AsyncClient) -> None:
    """The same on the readers' surfaces of the embedded mode (no push there: devices need the worker)."""
    service = service_factory(name="kill-embedded")
    try:
        await kill_on_readers(service, client, "en")
    finally:
        service.stop()
