"""The front protocol's reading of a request head, held against uvicorn's own parser (httptools).

The front protocol (``transports/native/front.py``) answers a reader's opening itself only if it is certain of it;
anything else goes, with every byte read so far, to uvicorn's httptools-based protocol. The property: whenever
the front protocol would answer natively, httptools reads the same bytes as exactly that request (same method,
target, version and headers), with no body, ending exactly where the front protocol ends it, so the bytes behind
the head (a pipelined request, the first WebSocket frames) are handed on intact and never read as part of it.
Random and adversarial heads: pipelined requests, ``Transfer-Encoding``/``Content-Length`` on a GET, obs-fold,
duplicate or empty Host, bare CR or LF, NUL, over-long lines. Then, on real sockets, a head split across two
reads at every byte, and through a real hub (``service_factory``) heads httptools refuses.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from uvicorn.server import ServerState

from ticker_service.transports.native.front import HEAD_LIMIT, FrontProtocol, cannot_be_an_opening, split_opening

from ..support.front import Open, front_connections
from ..support.processes import TIMEOUT, Service, ServiceFactory

WS_HEAD = (
    b"GET /v1/stream?lang=en HTTP/1.1\r\nHost: news.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SSE_HEAD = b"GET /v1/events?category=politics HTTP/1.1\r\nHost: news.example\r\nAccept: text/event-stream\r\n\r\n"
PING = b"\x89\x8c" + b"\0\0\0\0" + b"still there?"  # a masked ping (mask 0), pipelined behind an opening


def front_decision(buffer: bytes) -> tuple[str, int]:
    """What the front protocol's ``data_received`` decides for ``buffer`` as its first read: ``("native", end)``
    (the head is the first ``end`` bytes, answered natively; the rest is handed on), ``("uvicorn", 0)`` (all of it
    handed to uvicorn's parser) or ``("wait", 0)`` (read more). The same steps, on the same functions."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return ("uvicorn", 0) if len(buffer) > HEAD_LIMIT or cannot_be_an_opening(buffer) else ("wait", 0)
    return ("native", end + 4) if split_opening(buffer[: end + 2]) is not None else ("uvicorn", 0)


@dataclass
class Message:
    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    method: bytes = b""
    version: str = ""
    end: int = -1  # the offset just past the byte that completed it


@dataclass
class HttptoolsReading:
    """What httptools makes of a byte stream, fed one byte at a time so that each event has its offset."""

    messages: list[Message] = field(default_factory=list)
    error_at: int | None = None
    upgrade_at: int | None = None


def httptools_reading(data: bytes) -> HttptoolsReading:
    reading = HttptoolsReading()
    position = 0

    class Callbacks:
        def on_message_begin(self) -> None:
            reading.messages.append(Message())

        def on_url(self, url: bytes) -> None:
            reading.messages[-1].url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            reading.messages[-1].headers.append((name.lower(), value))

        def on_headers_complete(self) -> None:
            reading.messages[-1].method = parser.get_method()
            reading.messages[-1].version = parser.get_http_version()

        def on_body(self, body: bytes) -> None:
            reading.messages[-1].body += body

        def on_message_complete(self) -> None:
            reading.messages[-1].end = position + 1

    parser = httptools.HttpRequestParser(Callbacks())
    for position in range(len(data)):
        try:
            parser.feed_data(data[position : position + 1])
        except httptools.HttpParserUpgrade:
            reading.upgrade_at = position + 1
            break
        except httptools.HttpParserError:
            reading.error_at = position
            break
    return reading


def refused_for_a_line_end_or_control(reading: HttptoolsReading, data: bytes) -> bool:
    """httptools refused ``data`` at a bare CR or LF or a control byte (no client sends a CRLF CRLF after one)."""
    at = reading.error_at
    if at is None:
        return False
    byte, before = data[at], data[at - 1 : at]
    if byte == 0x0A:
        return before != b"\r"  # a bare LF
    if before == b"\r":
        return True  # a bare CR
    return (byte < 0x20 and byte not in (0x09, 0x0D)) or byte == 0x7F


def check_agreement(buffer: bytes) -> None:
    decision, end = front_decision(buffer)
    if decision == "wait":  # only for a head httptools has not finished either, and has no reason to refuse yet
        reading = httptools_reading(buffer)
        assert not any(message.end >= 0 for message in reading.messages) and reading.upgrade_at is None
        assert not refused_for_a_line_end_or_control(reading, buffer), f"httptools refuses at {reading.error_at}"
    if decision != "native":
        return  # uvicorn's parser gets every byte read so far: it decides, as if it had read them itself
    head = buffer[: end - 2]
    opening = split_opening(head)
    assert opening is not None
    kind, target, headers = opening
    reading = httptools_reading(buffer[:end])
    assert reading.error_at is None, f"httptools refuses the head at byte {reading.error_at}"
    assert len(reading.messages) == 1
    (message,) = reading.messages
    assert message.end == end, "httptools ends the request elsewhere: a body, or a head of another length"
    assert message.body == b""
    assert (message.method, message.url, message.version) == (b"GET", target, "1.1")
    assert [(name, value.strip(b" \t")) for name, value in message.headers] == headers
    # The bytes behind the head are no part of the request: httptools, fed everything, ends it at the same byte.
    whole = httptools_reading(buffer)
    assert whole.messages and whole.messages[0].end in (end, -1) and whole.messages[0].body == b""
    if whole.messages[0].end == -1:  # only an upgrade stops the parser before it completes the message
        assert whole.upgrade_at == end


# -- the pieces of adversarial heads -----------------------------------------------------------------------------

EOLS = st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r", b"\r\r\n", b"\n\r"])
REQUEST_LINES = st.one_of(
    st.sampled_from(
        [
            b"GET /v1/stream HTTP/1.1",
            b"GET /v1/events HTTP/1.1",
            b"GET /v1/stream?lang=en&x=%20 HTTP/1.1",
            b"GET /v1/events?category=politics HTTP/1.1",
            b"GET /v1/stream HTTP/1.0",
            b"POST /v1/stream HTTP/1.1",
            b"GET /healthz HTTP/1.1",
            b"GET  /v1/stream HTTP/1.1",
            b"GET /v1/stream  HTTP/1.1",
            b"GET /v1/stream HTTP/1.1 ",
            b"GET /v1/stream#frag HTTP/1.1",
        ]
    ),
    st.builds(
        lambda path, query: b"GET " + path + (b"?" + query if query is not None else b"") + b" HTTP/1.1",
        st.sampled_from([b"/v1/stream", b"/v1/events"]),
        st.none() | st.binary(max_size=12),
    ),
)
NAMES = st.sampled_from(
    [
        b"Host",
        b"host",
        b"Upgrade",
        b"Connection",
        b"Sec-WebSocket-Key",
        b"Sec-WebSocket-Version",
        b"Accept",
        b"Content-Length",
        b"content-length",
        b"Transfer-Encoding",
        b"Transfer-Encoding ",
        b" Host",
        b"X-Odd_Name",
        b"X\x00",
        b"",
        b"H\x7fst",
        b"Content-Length\t",
    ]
) | st.binary(min_size=1, max_size=6)
VALUES = st.sampled_from(
    [
        b" news.example",
        b"",
        b" ",
        b" websocket",
        b" Upgrade",
        b" keep-alive, Upgrade",
        b" dGhlIHNhbXBsZSBub25jZQ==",
        b" 13",
        b" 0",
        b" 5",
        b" chunked",
        b" -1",
        b" 1, 2",
        b"\tx\t",
        b" a\x00b",
        b" a\rb",
        b" a\nb",
        b" caf\xc3\xa9",
        b" \x80\xff",
        b" \x7f",
        b" " + b"v" * 9000,  # a line longer than the head limit
    ]
) | st.binary(max_size=10)
HEADER_LINES = st.one_of(
    st.builds(
        lambda name, colon, value, eol: name + colon + value + eol,
        NAMES,
        st.sampled_from([b":"] * 5 + [b""]),
        VALUES,
        EOLS,
    ),
    st.sampled_from([b" folded\r\n", b"\tfolded\r\n", b"\r\n", b"Host: a\r\nHost: b\r\n", b"Host:\r\n"]),
)
TAILS = st.sampled_from(
    [
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /v1/flashes HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        b"0\r\n\r\n",
        b"hello",
        PING,
    ]
) | st.binary(max_size=40)


@st.composite
def heads(draw: st.DrawFn) -> bytes:
    head = draw(REQUEST_LINES) + draw(EOLS) + b"".join(draw(st.lists(HEADER_LINES, max_size=8)))
    return head + draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b""])) + draw(TAILS)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A well-formed opening with one byte replaced, inserted or removed, and something pipelined behind it."""
    base = bytearray(draw(st.sampled_from([WS_HEAD, SSE_HEAD])))
    at = draw(st.integers(0, len(base) - 1))
    action = draw(st.sampled_from(["replace", "insert", "delete"]))
    byte = draw(st.sampled_from([0, 9, 10, 13, 32, 58, 127, 128, 255]) | st.integers(0, 255))
    if action == "replace":
        base[at] = byte
    elif action == "insert":
        base.insert(at, byte)
    else:
        del base[at]
    return bytes(base) + draw(TAILS)


FAST = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(heads())
@example(WS_HEAD + PING)
@example(SSE_HEAD + b"GET /healthz HTTP/1.1\r\n\r\n")
@example(b"GET /v1/events HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
@example(b"GET /v1/stream HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
@example(b"GET /v1/stream HTTP/1.1\r\nHost:\r\n\r\n")
@example(b"GET /v1/stream HTTP/1.1\r\nX: a\r\n b\r\n\r\n")
def test_a_head_answered_natively_is_the_request_httptools_reads(buffer: bytes) -> None:
    check_agreement(buffer)


@FAST
@given(mutated())
def test_a_well_formed_opening_with_one_byte_changed(buffer: bytes) -> None:
    check_agreement(buffer)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes(buffer: bytes) -> None:
    check_agreement(b"GET /v1/stream HTTP/1.1\r\n" + buffer)
    check_agreement(buffer)


@pytest.mark.parametrize(
    "buffer",
    [
        b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /v1/stream HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        b"GET /v1/stream HTTP/1.1\nHost: x\n\n",
        b"GET /v1/stream HTTP/1.1\r\nHost: x\rY\r\n\r\n",
        b"GET /v1/stream HTTP/1.1\r\nHost: x\x00\r\n\r\n",
        b"GET /v1/stream HTTP/1.1\r\nX-Long: " + b"x" * (HEAD_LIMIT + 1),
    ],
    ids=["content-length", "chunked", "obs-fold", "bare-lf", "bare-cr", "nul", "over-long-unfinished"],
)
def test_adversarial_heads_go_to_uvicorn(buffer: bytes) -> None:
    assert front_decision(buffer) == ("uvicorn", 0)


def test_every_prefix_of_an_opening_waits_for_the_rest() -> None:
    for end in range(len(WS_HEAD)):
        assert front_decision(WS_HEAD[:end]) == ("wait", 0)
    assert front_decision(WS_HEAD) == ("native", len(WS_HEAD))
    check_agreement(WS_HEAD + PING)


def fed_in_pieces(buffer: bytes, cuts: list[int]) -> tuple[str, int]:
    """The decision when ``buffer`` arrives in reads ending at ``cuts``: as ``data_received`` takes them, with its
    buffer kept between reads and each read searched from where the last one ended."""
    kept = b""
    for start, stop in zip([0, *cuts], [*cuts, len(buffer)], strict=True):
        data = kept + buffer[start:stop]
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return ("native", end + 4) if split_opening(data[: end + 2]) is not None else ("uvicorn", 0)
        if len(data) > HEAD_LIMIT or cannot_be_an_opening(data, len(kept)):
            return ("uvicorn", 0)
        kept = data
    return ("wait", 0)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(heads(), mutated()), st.data())
def test_a_head_split_across_reads_gets_the_decision_it_gets_whole(buffer: bytes, data: st.DataObject) -> None:
    """Wherever the reads end (every byte its own read included), the decision is the one made on the whole buffer,
    except that it may come earlier: a head is handed on once a byte shows it is no opening."""
    everywhere = data.draw(st.booleans())
    cuts = (
        list(range(1, len(buffer)))
        if everywhere
        else sorted(data.draw(st.sets(st.integers(1, max(1, len(buffer) - 1)))))
    )
    cuts = [cut for cut in cuts if cut < len(buffer)]
    whole = front_decision(buffer)
    pieces = fed_in_pieces(buffer, cuts)
    if whole[0] == "uvicorn":
        assert pieces == whole
    else:  # waiting, or native: the same unless a prefix was already no opening (then uvicorn judges it all)
        assert pieces == whole or (pieces == ("uvicorn", 0) and cannot_be_an_opening(buffer))


# -- a head split across two reads at every byte, on a real socket pair ------------------------------------------


@pytest.fixture
async def open_front(tmp_path: Path) -> AsyncIterator[Open]:
    """Connections served by the front protocol with the app's real state."""
    async with front_connections(tmp_path) as open_one:
        yield open_one


def buffered(state: ServerState) -> int | None:
    """How many bytes the front protocol holds undecided (``None``: it has handed the connection on)."""
    fronts = [p for p in list(state.connections) if isinstance(p, FrontProtocol)]  # type: ignore[misc]
    return len(fronts[0]._buffer) if fronts else None


async def read_until(state: ServerState, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while buffered(state) != count:
        assert asyncio.get_running_loop().time() < deadline, f"the front protocol never read {count} bytes"
        await asyncio.sleep(0)  # yield to the server's side of the loop: no timing involved


async def test_an_opening_split_at_every_byte_is_answered_and_the_ping_behind_it_kept(open_front: Open) -> None:
    """Each split of the opening (plus a ping pipelined behind it) into two reads: one 101, then the ping's pong."""
    wire = WS_HEAD + PING
    for cut in range(1, len(WS_HEAD)):
        reader, writer, state = await open_front()
        writer.write(wire[:cut])
        await read_until(state, cut)
        writer.write(wire[cut:])
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), (cut, answer[:80])
        pong = await asyncio.wait_for(reader.readexactly(14), TIMEOUT)
        assert pong == b"\x8a\x0cstill there?", cut
        writer.close()


async def test_pipelined_requests_after_a_handed_over_head_are_each_answered(open_front: Open) -> None:
    """A request the front protocol hands to uvicorn with a second one behind it, split at every tenth byte."""
    wire = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    for cut in range(1, len(wire), 10):
        reader, writer, _ = await open_front()
        writer.write(wire[:cut])
        await writer.drain()
        writer.write(wire[cut:])
        replies = await asyncio.wait_for(reader.read(), TIMEOUT)
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", replies) == [b"200", b"200"], (cut, replies[:300])
        writer.close()


# -- through a real hub ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(service_factory: ServiceFactory) -> Service:
    return service_factory(name="front-differential")


@pytest.mark.parametrize(
    "request_bytes",
    [
        WS_HEAD[:-2] + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc",
        WS_HEAD[:-2] + b"X: a\x00b\r\n\r\n",
        WS_HEAD.replace(b"HTTP/1.1", b"HTTP/1.1 x", 1),
        WS_HEAD[:-2] + b"Content-Length: x\r\n\r\n",
    ],
    ids=["te-and-cl", "nul", "bad-version", "bad-length"],
)
async def test_heads_httptools_refuses_are_refused_by_the_hub_not_upgraded(hub: Service, request_bytes: bytes) -> None:
    assert httptools_reading(request_bytes).error_at is not None
    assert front_decision(request_bytes)[0] == "uvicorn"
    port = int(hub.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


async def test_a_real_hub_keeps_the_request_behind_an_event_stream_opening_apart(hub: Service) -> None:
    """An opening and a ping in one write, through the hub: 101 and the pong; the frame is not read as a header."""
    port = int(hub.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(WS_HEAD.replace(b"news.example", b"127.0.0.1") + PING)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 101 ")
        assert await asyncio.wait_for(reader.readexactly(14), TIMEOUT) == b"\x8a\x0cstill there?"
    finally:
        writer.close()
