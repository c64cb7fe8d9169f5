"""Readers over WebSocket and SSE against a real hub, in both modes: filters, event types, resume, keepalive."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets

from ticker_service.events import event_key

from .support.flashes import flash_id, publish
from .support.processes import Service, ServiceFactory
from .support.readers import next_ws_event, sse_reader, ws_reader
from .support.schema import assert_ninjs


async def test_websocket_and_sse_readers_both_get_the_flash(service: Service, client: httpx.AsyncClient) -> None:
    """One publish reaches live-only WebSocket and SSE readers, with the same event id and document."""
    async with (
        ws_reader(service, "lang=sv", from_now=False) as ws,
        sse_reader(service, "lang=sv", from_now=False) as sse,
    ):
        doc = await publish(client, service, "BREAKING: both transports", language="sv")
        ws_event = await next_ws_event(ws)
        sse_event = await sse.next_event()
    assert set(ws_event) == {"type", "event_id", "flash"}
    assert ws_event["type"] == "flash"
    assert ws_event["flash"] == doc
    assert sse_event["event"] == "flash"
    assert sse_event["id"] == ws_event["event_id"]
    assert sse_event["flash"] == doc
    assert_ninjs(ws_event["flash"])
    assert_ninjs(sse_event["flash"])


async def test_reader_whose_filter_does_not_match_gets_nothing(service: Service, client: httpx.AsyncClient) -> None:
    """A non-matching flash never arrives: the first event a reader sees is the later matching one."""
    cases = [
        ("lang=ar", {"language": "en"}, {"language": "ar"}),
        ("lang=en", {"language": "eng"}, {"language": "en-GB"}),
        ("category=sports,health", {"category": "politics"}, {"category": "health"}),
        ("region=mena", {"regions": ["europe"]}, {"regions": ["europe", "mena"]}),
        ("max_urgency=2", {"urgency": 3}, {"urgency": 2}),
        (
            "lang=es&category=sports",
            {"language": "es", "category": "economy"},
            {"language": "es", "category": "sports"},
        ),
    ]
    for query, miss, hit in cases:
        async with ws_reader(service, query) as ws, sse_reader(service, query) as sse:
            await publish(client, service, "BREAKING: should not arrive", **miss)
            wanted = await publish(client, service, "BREAKING: should arrive", **hit)
            assert (await next_ws_event(ws))["flash"]["uri"] == wanted["uri"], query
            assert (await sse.next_event())["flash"]["uri"] == wanted["uri"], query


async def test_update_and_withdraw_reach_readers_as_such(service: Service, client: httpx.AsyncClient) -> None:
    async with ws_reader(service) as ws, sse_reader(service) as sse:
        doc = await publish(client, service, "BREAKING: first take")
        url = f"{service.base_url}/v1/flashes/{flash_id(doc)}"
        await client.patch(url, json={"headline": "BREAKING: second take", "urgency": 2}, headers=service.headers())
        await client.delete(url, headers=service.headers())
        ws_types = [(await next_ws_event(ws)) for _ in range(3)]
        sse_types = [(await sse.next_event()) for _ in range(3)]
    assert [e["type"] for e in ws_types] == ["flash", "update", "withdraw"]
    assert [e["event"] for e in sse_types] == ["flash", "update", "withdraw"]
    assert [e["flash"]["version"] for e in ws_types] == ["1", "2", "3"]
    assert ws_types[1]["flash"]["headlines"][0]["value"] == "BREAKING: second take"
    assert ws_types[2]["flash"]["pubStatus"] == "canceled"
    ids = [e["event_id"] for e in ws_types]
    assert ids == [e["id"] for e in sse_types]
    assert len(set(ids)) == 3


async def _missed_five(service: Service, client: httpx.AsyncClient, lang: str) -> tuple[str, list[str]]:
    """Receive one flash, disconnect, then publish five more (and one in another language) while away."""
    async with ws_reader(service, f"lang={lang}") as ws:
        await publish(client, service, "resume: seen", language=lang)
        seen = (await next_ws_event(ws))["event_id"]
    missed = []
    for i in range(5):
        missed.append((await publish(client, service, f"resume: missed {i}", language=lang))["uri"])
        await publish(client, service, f"resume: other language {i}", language="fr")
    return seen, missed


async def test_websocket_resume_replays_exactly_the_missed_flashes(service: Service, client: httpx.AsyncClient) -> None:
    """?last_event_id= replays the 5 missed flashes in order, then goes live, with no duplicate."""
    seen, missed = await _missed_five(service, client, "de")
    async with ws_reader(service, f"lang=de&last_event_id={seen}") as ws:
        replayed = [await next_ws_event(ws) for _ in range(5)]
        live = await publish(client, service, "resume: live", language="de")
        after = await next_ws_event(ws)
        with pytest.raises(TimeoutError):
            await next_ws_event(ws, timeout=0.3)  # nothing else queued: no duplicate of any replayed event
    assert [e["flash"]["uri"] for e in replayed] == missed
    ids = [e["event_id"] for e in replayed] + [after["event_id"]]
    assert ids == sorted(ids, key=event_key)
    assert after["flash"]["uri"] == live["uri"]


async def test_sse_resume_with_last_event_id_header(service: Service, client: httpx.AsyncClient) -> None:
    """SSE's Last-Event-ID header resumes the same way, and the seam with the live stream has no duplicate."""
    seen, missed = await _missed_five(service, client, "it")
    async with sse_reader(service, "lang=it", headers={"Last-Event-ID": seen}) as sse:
        replayed = [await sse.next_event() for _ in range(5)]
        live = await publish(client, service, "resume: live", language="it")
        after = await sse.next_event()
    assert [e["flash"]["uri"] for e in replayed] == missed
    assert after["flash"]["uri"] == live["uri"]
    assert len({e["id"] for e in replayed} | {after["id"]}) == 6


async def test_snapshot_then_subscribe_loses_nothing(service: Service, client: httpx.AsyncClient) -> None:
    """A page lists the flashes, then subscribes with the list's last_event_id: what came between arrives."""
    before = await publish(client, service, "snapshot: in the list", language="pt")
    listing = (await client.get(f"{service.base_url}/v1/flashes?lang=pt")).json()
    assert listing["flashes"][0]["uri"] == before["uri"]
    between = await publish(client, service, "snapshot: published in between", language="pt")
    async with ws_reader(service, f"lang=pt&last_event_id={listing['last_event_id']}") as ws:
        assert (await next_ws_event(ws))["flash"]["uri"] == between["uri"]


async def test_websocket_reader_changes_filter_in_band(service: Service, client: httpx.AsyncClient) -> None:
    """A {"type": "subscribe"} message replaces the filter on the open connection."""
    async with ws_reader(service, "lang=en") as ws:
        await ws.send(json.dumps({"type": "subscribe", "lang": "es", "category": "sports"}))
        # The message and the publishes travel on different connections: retry until the filter is in place.
        for _ in range(20):
            doc = await publish(client, service, "subscribe: probe", language="es", category="sports")
            try:
                event = await next_ws_event(ws, timeout=0.5)
            except TimeoutError:
                continue
            if event["flash"]["uri"] == doc["uri"]:
                break
        else:
            pytest.fail("the new filter never took effect")
        await publish(client, service, "subscribe: old filter", language="en")
        wanted = await publish(client, service, "subscribe: new filter", language="es", category="sports")
        assert (await next_ws_event(ws))["flash"]["uri"] == wanted["uri"]


async def test_bad_filters_are_refused(service: Service, client: httpx.AsyncClient) -> None:
    """A malformed filter or resume id is refused before the stream starts."""
    for query in ("max_urgency=12", "last_event_id=yesterday"):
        response = await client.get(f"{service.base_url}/v1/events?{query}")
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        with pytest.raises(websockets.InvalidStatus):
            async with ws_reader(service, query):
                pass


async def test_bad_in_band_message_closes_with_1008(service: Service) -> None:
    async with ws_reader(service) as ws:
        await ws.send("not json")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.fixture(scope="module")
def fast_heartbeat(service_factory: ServiceFactory) -> Service:
    return service_factory(TICKER_HEARTBEAT_SECONDS="0.2")


async def test_sse_sends_heartbeat_comments_not_events(fast_heartbeat: Service, client: httpx.AsyncClient) -> None:
    """Keepalive is an SSE comment at the configured interval; the stream carries events only."""
    async with sse_reader(fast_heartbeat) as sse:
        task = asyncio.create_task(sse.next_event(timeout=30))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while sse.comments.count("keepalive") < 3 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert sse.comments.count("keepalive") >= 3
        assert not task.done()  # no data event was produced by the heartbeats
        doc = await publish(client, fast_heartbeat, "BREAKING: after heartbeats")
        assert (await task)["flash"]["uri"] == doc["uri"]


async def test_burst_of_concurrent_publishes_arrives_complete_and_in_order(
    service: Service, client: httpx.AsyncClient
) -> None:
    """40 concurrent publishes reach WS and SSE readers once each, in event-id (history) order."""
    async with ws_reader(service, "lang=nl") as ws, sse_reader(service, "lang=nl") as sse:
        docs = await asyncio.gather(*(publish(client, service, f"burst {i}", language="nl") for i in range(40)))
        ws_events = [await next_ws_event(ws) for _ in range(40)]
        sse_events = [await sse.next_event() for _ in range(40)]
    ids = [e["event_id"] for e in ws_events]
    assert ids == sorted(ids, key=event_key)
    assert len(set(ids)) == 40
    assert {e["flash"]["uri"] for e in ws_events} == {d["uri"] for d in docs}
    assert [e["id"] for e in sse_events] == ids


async def test_websocket_keepalive_pings_and_cuts_off_a_silent_reader(fast_heartbeat: Service) -> None:
    """The hub pings every heartbeat; a reader that answers stays, one that never answers is closed with 1011."""
    async with ws_reader(fast_heartbeat, "lang=en") as answering:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(fast_heartbeat.base_url.rsplit(":", 1)[1]))
        writer.write(
            b"GET /v1/stream?lang=en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        received = b""
        while b"\x88" not in received:  # read (never answer) until the close frame arrives
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            assert chunk, "connection ended without a close frame"
            received += chunk
        assert received.startswith(b"\x89\x00")  # a ping first
        close = received[received.index(b"\x88") :]
        assert int.from_bytes(close[2:4], "big") == 1011
        writer.close()
        # The reader that answers pings is still there and still gets flashes.
        async with httpx.AsyncClient() as client:
            doc = await publish(client, fast_heartbeat, "BREAKING: still here")
        assert (await next_ws_event(answering))["flash"]["uri"] == doc["uri"]


async def test_only_a_get_opens_the_stream(service: Service) -> None:
    """An upgrade request must be a GET (RFC 6455 §4.1): anything else never gets a 101."""
    host, port = service.base_url.removeprefix("http://").rsplit(":", 1)
    handshake = (
        "{method} /v1/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
    )
    for method, expected in (("GET", b"HTTP/1.1 101"), ("POST", b"")):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(handshake.format(method=method, host=host, port=port).encode())
        answer = await asyncio.wait_for(reader.read(12), 10)
        writer.close()
        assert answer.startswith(expected) if expected else not answer.startswith(b"HTTP/1.1 101"), (method, answer)


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head[:-4].split(b"\r\n")
    return status, {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)}


async def test_readers_on_a_kept_alive_connection_are_served_too(service: Service, client: httpx.AsyncClient) -> None:
    """The front protocol reads only a connection's first request; a reader's request after another one on the same
    connection goes through uvicorn's parser to the same native stream, for SSE and for WebSocket."""
    host, port = service.base_url.removeprefix("http://").rsplit(":", 1)
    first = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    events = f"GET /v1/events?lang=et HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    opening = (
        f"GET /v1/stream?lang=et HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    streams = []
    for second in (events, opening):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(first)
        status, headers = await _read_response_head(reader)
        assert status.startswith(b"HTTP/1.1 200") and headers.get(b"connection") != b"close", (status, headers)
        await reader.readexactly(int(headers[b"content-length"]))
        writer.write(second)
        status, headers = await _read_response_head(reader)
        expected = b"HTTP/1.1 200" if second is events else b"HTTP/1.1 101"
        assert status.startswith(expected), (status, headers)
        streams.append((reader, writer))
    doc = await publish(client, service, "BREAKING: kept alive", language="et")
    for reader, writer in streams:
        received = b""
        while doc["uri"].encode() not in received:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, "the stream ended before the flash arrived"
            received += chunk
        writer.close()


async def test_refused_openings_are_problem_documents(service: Service) -> None:
    """A WebSocket opening that RFC 6455 refuses gets a problem+json answer saying why, with the headers it asks for."""
    host, port = service.base_url.removeprefix("http://").rsplit(":", 1)
    base = f"GET /v1/stream HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    cases = [
        (base + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426),
        (base + "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        (base + "Sec-WebSocket-Version: 13\r\n\r\n", 400),  # no key
        (
            base.replace("/v1/stream", "/v1/stream?max_urgency=12")
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            400,
        ),
    ]
    for request, status in cases:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(request.encode())
        line, headers = await _read_response_head(reader)
        body = json.loads(await reader.readexactly(int(headers[b"content-length"])))
        writer.close()
        assert line.startswith(b"HTTP/1.1 %d" % status), (request, line)
        assert headers[b"content-type"] == b"application/problem+json"
        assert body["status"] == status and body["detail"], body
        if "max_urgency" in request:
            assert body["errors"][0]["field"] == "max_urgency"
        if status == 426:
            assert headers[b"sec-websocket-version"] == b"13"
