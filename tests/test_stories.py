"""One story, many languages, through the real path in every mode (embedded ``ticker run``, Redis with a hub and a
worker, the app under plain uvicorn): WebSocket and SSE readers that prefer languages, resuming readers, the
``reset`` snapshot and ``GET /v1/flashes`` get one version of each story, the best by their order."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from asyncio.subprocess import PIPE
from typing import Any

import httpx
import pytest
from ticker_client import Event, TickerClient

from .support.flashes import flash_id, publish
from .support.processes import ROOT, TIMEOUT, Service, ServiceFactory, run_ticker, start_hub, ticker
from .support.readers import next_ws_event, sse_reader, wait_readers, ws_reader
from .support.schema import ninjs_validator

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module", params=["embedded", "redis", "asgi"])
def served(request: pytest.FixtureRequest, service_factory: ServiceFactory) -> Service:
    return service_factory(request.param, name=f"stories-{request.param}")


def story() -> str:
    return f"quake-{secrets.token_hex(4)}"


async def version(client: httpx.AsyncClient, served: Service, language: str, name: str, **extra: Any) -> dict:
    doc = await publish(
        client, served, f"BREAKING: quake ({language}) {secrets.token_hex(3)}", language=language, story=name, **extra
    )
    assert doc["events"] == [{"id": name}]
    ninjs_validator().validate(doc)
    return doc


async def withdraw(client: httpx.AsyncClient, served: Service, doc: dict) -> None:
    response = await client.delete(f"{served.base_url}/v1/flashes/{flash_id(doc)}", headers=served.headers())
    assert response.status_code == 200, response.text


def seen(message: dict[str, Any]) -> tuple[str, str, str | None]:
    """(type, uri, replaces) of a WebSocket message, or of an SSE event (``SSEReader`` puts its data in "flash")."""
    if "event" in message:  # SSE: a replacing update's data is {"flash", "replaces"}
        data = message["flash"]
        if "replaces" in data:
            return message["event"], data["flash"]["uri"], data["replaces"]
        return message["event"], data["uri"], None
    return message["type"], message["flash"]["uri"], message.get("replaces")


async def last_event_id(client: httpx.AsyncClient, served: Service) -> str:
    return str((await client.get(f"{served.base_url}/v1/flashes?limit=1")).json()["last_event_id"])


async def test_readers_get_one_version_per_story_the_best_by_their_order(
    served: Service, client: httpx.AsyncClient
) -> None:
    """WS and SSE with ``lang=ar,en``: en, then ar replacing it, fr and en-GB never, ar withdrawn falls back to en,
    en withdrawn leaves only ``withdraw``. ``lang=en`` alone, and story-less flashes, as before. A reader resuming
    from before it all never sees the killed versions."""
    name = story()
    start = await last_event_id(client, served)
    async with (
        ws_reader(served, "lang=ar,en") as ws,
        sse_reader(served, "lang=ar,en") as sse,
        ws_reader(served, "lang=en") as plain,
    ):
        en = await version(client, served, "en", name)
        ar = await version(client, served, "ar", name)
        await version(client, served, "fr", name)
        en_gb = await version(client, served, "en-GB", name)
        marker = await publish(client, served, "BREAKING: no story", language="ar")
        await withdraw(client, served, ar)
        await withdraw(client, served, en)
        expected = [
            ("flash", en["uri"], None),
            ("update", ar["uri"], en["uri"]),
            ("flash", marker["uri"], None),
            ("update", en["uri"], ar["uri"]),
            ("update", en_gb["uri"], en["uri"]),
        ]
        assert [seen(await next_ws_event(ws)) for _ in expected] == expected
        assert [seen(await sse.next_event()) for _ in expected] == expected
        plain_expected = [("flash", en["uri"], None), ("flash", en_gb["uri"], None), ("withdraw", en["uri"], None)]
        assert [seen(await next_ws_event(plain)) for _ in plain_expected] == plain_expected
        await withdraw(client, served, en_gb)
        assert seen(await next_ws_event(ws)) == ("withdraw", en_gb["uri"], None)
        assert seen(await sse.next_event()) == ("withdraw", en_gb["uri"], None)

    # A reader resuming from before it all never shows the killed versions, not even for a moment (kill
    # everywhere): its replay has only what is still live, up to a marker published after.
    end = await publish(client, served, "BREAKING: end of the replay", language="en")
    shown_after_resume = [("flash", marker["uri"], None), ("flash", end["uri"], None)]
    async with ws_reader(served, f"lang=ar,en&last_event_id={start}") as resumed:
        got = [seen(await next_ws_event(resumed))]
        while got[-1][1] != end["uri"]:
            got.append(seen(await next_ws_event(resumed)))
        assert [g for g in got if g[0] != "withdraw"] == shown_after_resume
    async with sse_reader(served, "lang=ar,en", {"Last-Event-ID": start}) as resumed_sse:
        got = [seen(await resumed_sse.next_event())]
        while got[-1][1] != end["uri"]:
            got.append(seen(await resumed_sse.next_event()))
        assert [g for g in got if g[0] != "withdraw"] == shown_after_resume


async def test_a_reader_that_had_a_version_resumes_to_the_better_one(
    served: Service, client: httpx.AsyncClient
) -> None:
    """Resuming after en: the ar published meanwhile comes as an update replacing en, the worse fr not at all."""
    name = story()
    en = await version(client, served, "en", name)
    after_en = await last_event_id(client, served)
    await version(client, served, "fr", name)
    ar = await version(client, served, "ar", name)
    marker = await publish(client, served, "BREAKING: end of the replay", language="en")
    async with ws_reader(served, f"lang=ar,en&last_event_id={after_en}") as ws:
        assert seen(await next_ws_event(ws)) == ("update", ar["uri"], en["uri"])
        assert seen(await next_ws_event(ws)) == ("flash", marker["uri"], None)


async def test_list_and_reset_hold_one_version_per_story(served: Service, client: httpx.AsyncClient) -> None:
    """GET /v1/flashes and the ``reset`` snapshot with ``lang=ar,en``: ar only; ``lang=en``: en; no lang: all."""
    name = story()
    en = await version(client, served, "en", name)
    ar = await version(client, served, "ar", name)
    fr = await version(client, served, "fr", name)

    async def listed(query: str) -> list[str]:
        response = await client.get(f"{served.base_url}/v1/flashes?limit=200&{query}")
        assert response.status_code == 200
        for doc in response.json()["flashes"]:
            ninjs_validator().validate(doc)
        return [d["uri"] for d in response.json()["flashes"] if d.get("events") == [{"id": name}]]

    assert await listed("lang=ar,en") == [ar["uri"]]
    assert await listed("lang=en,ar") == [en["uri"]]
    assert await listed("lang=fr,ar,en") == [fr["uri"]]
    assert await listed("lang=en") == [en["uri"]]
    assert await listed("") == [fr["uri"], ar["uri"], en["uri"]]

    foreign = "ffff0000-1-0"  # another epoch: the history cannot say, so the hub sends a reset
    async with ws_reader(served, f"lang=ar,en&last_event_id={foreign}") as ws:
        reset = await next_ws_event(ws)
        assert reset["type"] == "reset"
        assert [d["uri"] for d in reset["flashes"] if d.get("events") == [{"id": name}]] == [ar["uri"]]
    async with sse_reader(served, "lang=en,fr", {"Last-Event-ID": foreign}) as sse:
        event = await sse.next_event()
        assert event["event"] == "reset"
        assert [d["uri"] for d in event["flash"]["flashes"] if d.get("events") == [{"id": name}]] == [en["uri"]]


async def test_a_bad_story_is_refused_and_a_correction_keeps_it(served: Service, client: httpx.AsyncClient) -> None:
    """``story`` is 1–64 of [A-Za-z0-9_-] (else 422 naming it); a correction keeps it and cannot change it."""
    for bad in ("", "x" * 65, "a b", "quake/1", 7):
        response = await client.post(
            f"{served.base_url}/v1/flashes",
            json={"headline": "BREAKING: x", "language": "en", "category": "politics", "story": bad},
            headers=served.headers(),
        )
        assert response.status_code == 422, (bad, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["story"]
    name = story()
    doc = await version(client, served, "en", name)
    url = f"{served.base_url}/v1/flashes/{flash_id(doc)}"
    corrected = await client.patch(url, json={"headline": "BREAKING: corrected"}, headers=served.headers())
    assert corrected.status_code == 200 and corrected.json()["events"] == [{"id": name}]
    moved = await client.patch(url, json={"story": "other"}, headers=served.headers())
    assert moved.status_code == 422


async def test_a_hub_started_later_knows_the_versions_published_before(
    distributed: Service, client: httpx.AsyncClient, service_factory: ServiceFactory
) -> None:
    """Redis: a hub started after en was published, and whose window of recent events does not reach back to it,
    still sends ar as an update replacing en (it reads the live versions of stories when it starts)."""
    name = story()
    en = await version(client, distributed, "en", name)
    for n in range(3):
        await publish(client, distributed, f"BREAKING: after en {n}")
    short = dataclasses.replace(distributed, env={**distributed.env, "TICKER_REPLAY_MAX_EVENTS": "2"}, processes=[])
    url, _ = start_hub(short, service_factory.directory("late-hub"), "late-hub")
    distributed.processes.extend(short.processes)  # stopped with the service
    late = dataclasses.replace(distributed, base_url=url, processes=[])
    async with ws_reader(late, "lang=ar,en") as ws:
        ar = await version(client, distributed, "ar", name)
        assert seen(await next_ws_event(ws)) == ("update", ar["uri"], en["uri"])


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_python_client_gives_replaces(served: Service, client: httpx.AsyncClient, transport: str) -> None:
    """``TickerClient(lang=["ar", "en"])``: the better version is an ``update`` event with ``replaces``."""
    name = story()
    since = await last_event_id(client, served)
    async with TickerClient(served.base_url, lang=["ar", "en"], transport=transport, last_event_id=since) as reader:
        en = await version(client, served, "en", name)
        ar = await version(client, served, "ar", name)
        events: list[Event] = []

        async def take() -> None:
            async for event in reader:
                events.append(event)
                if len(events) == 2:
                    return

        await asyncio.wait_for(take(), 15)
    assert [(e.type, e.uri, e.replaces) for e in events] == [
        ("flash", en["uri"], None),
        ("update", ar["uri"], en["uri"]),
    ]


async def test_cli_publishes_a_story_and_tail_shows_what_it_replaces(served: Service) -> None:
    """``ticker publish --story`` names the story; ``ticker tail --lang ar,en`` prints the update's ``replaces``."""
    name = story()
    env = {k: v for k, v in served.env.items() if k != "REDIS_URL"}
    await wait_readers(served, 0)  # earlier tests' readers are gone: the count below is the tail's
    tail = await asyncio.create_subprocess_exec(
        *ticker("tail", "--lang", "ar,en", "--server", served.base_url), env=env, cwd=ROOT, stdout=PIPE
    )
    try:
        await wait_readers(served, 1)
        for lang in ("en", "ar"):
            args = ["--lang", lang, "--category", "politics", "--story", name, "--server", served.base_url]
            done = await asyncio.to_thread(
                run_ticker, {**env, "TICKER_TOKEN": served.token}, "publish", f"BREAKING: {name} {lang}", *args
            )
            assert done.returncode == 0, done.stderr
        assert tail.stdout is not None
        lines = [(await asyncio.wait_for(tail.stdout.readline(), TIMEOUT)).decode() for _ in range(2)]
        assert lines[0].startswith("flash") and f"BREAKING: {name} en" in lines[0]
        assert lines[1].startswith("update") and f"BREAKING: {name} ar" in lines[1]
        assert "(replaces urn:ticker:flash:" in lines[1]
    finally:
        tail.terminate()
        await tail.wait()
