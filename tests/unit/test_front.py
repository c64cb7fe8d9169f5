"""The first request of a connection (``transports/native/front.py``): ``split_opening`` reads a reader's request
head or declines it; the front protocol, on a real socket pair with the app's real state, waits for a head sent in
pieces, keeps what a client sends after it, and hands long or odd requests to uvicorn's parser."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from uvicorn.server import ServerState

from ticker_service.transports.native.front import HEAD_LIMIT, FrontProtocol, cannot_be_an_opening, split_opening
from ticker_service.transports.native.http import ReaderHttpProtocol

from ..support.front import front_connections
from ..support.processes import TIMEOUT

WS_HEAD = (
    b"GET /v1/stream?lang=en HTTP/1.1\r\nHost: news.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)  # up to and including the last header's CRLF, as the front protocol hands it over
SSE_HEAD = b"GET /v1/events?category=politics HTTP/1.1\r\nHost: news.example\r\nAccept: text/event-stream\r\n"


# -- split_opening: a pure function of the head's bytes ----------------------------------------------------------


def test_a_websocket_opening_is_split_into_kind_target_and_headers() -> None:
    assert split_opening(WS_HEAD) == (
        b"stream",
        b"/v1/stream?lang=en",
        [
            (b"host", b"news.example"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            (b"sec-websocket-version", b"13"),
        ],
    )


def test_an_event_stream_request_is_split_too() -> None:
    kind, target, headers = split_opening(SSE_HEAD) or (b"", b"", [])
    assert (kind, target) == (b"events", b"/v1/events?category=politics")
    assert headers == [(b"host", b"news.example"), (b"accept", b"text/event-stream")]


def test_names_are_lower_cased_values_trimmed_of_spaces_and_tabs() -> None:
    opening = split_opening(b"GET /v1/events HTTP/1.1\r\nX-Mixed-Case:\t  spaced out \t\r\nEmpty:\r\n")
    assert opening is not None
    assert opening[2] == [(b"x-mixed-case", b"spaced out"), (b"empty", b"")]


def test_a_head_without_headers_and_a_bare_path_are_readers_requests() -> None:
    assert split_opening(b"GET /v1/events HTTP/1.1\r\n") == (b"events", b"/v1/events", [])
    assert split_opening(b"GET /v1/stream HTTP/1.1\r\n") == (b"stream", b"/v1/stream", [])


@pytest.mark.parametrize(
    "head",
    [
        WS_HEAD[:-2],  # the last header line without its CRLF
        WS_HEAD[:40],  # cut inside a header line
        b"GET /v1/stream?lang=en HTTP/1.1",  # the request line alone, unterminated
        b"",
        WS_HEAD + b"\r\n",  # the blank line that ends the head belongs to the caller, not to the headers
        WS_HEAD + b"\r\n\x81\x80abcd",  # nor do bytes pipelined after the head
    ],
    ids=["last-crlf-missing", "cut-in-a-line", "request-line-only", "empty", "blank-line", "pipelined-bytes"],
)
def test_anything_but_exactly_a_complete_head_is_declined(head: bytes) -> None:
    assert split_opening(head) is None


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/stream HTTP/1.1\r\nHost: x\r\n",
        b"get /v1/stream HTTP/1.1\r\nHost: x\r\n",
        b"GET /v1/stream HTTP/1.0\r\nHost: x\r\n",
        b"GET /v1/stream HTTP/2\r\nHost: x\r\n",
        b"GET /v1/flashes HTTP/1.1\r\nHost: x\r\n",
        b"GET /v1/streams HTTP/1.1\r\nHost: x\r\n",
        b"GET /v1/stream/ HTTP/1.1\r\nHost: x\r\n",
        b"GET http://x/v1/stream HTTP/1.1\r\nHost: x\r\n",
        b"GET /v1/stream?a b HTTP/1.1\r\nHost: x\r\n",
        b"GET  /v1/stream HTTP/1.1\r\nHost: x\r\n",
        b"GET /v1/stream HTTP/1.1\nHost: x\n",
        b"GET /v1/stream HTTP/1.1\r\nHost: x\n",
        b"GET /v1/stream HTTP/1.1\r\nHost: x\rY\r\n",
        b"GET /v1/stream HTTP/1.1\r\nHost: x\x00\r\n",
        b"GET /v1/stream HTTP/1.1\r\nHost : x\r\n",
        b"GET /v1/stream HTTP/1.1\r\nNo colon\r\n",
        b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n folded\r\n",
        b"GET /v1/stream HTTP/1.1\r\nContent-Length: 5\r\n",
        b"GET /v1/events HTTP/1.1\r\ntransfer-encoding: chunked\r\n",
        b"GET /v1/events HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    ],
    ids=[
        "post",
        "lower-case-method",
        "http-1.0",
        "http-2",
        "other-path",
        "longer-path",
        "trailing-slash",
        "absolute-form",
        "space-in-query",
        "two-spaces",
        "bare-lf",
        "bare-lf-after-header",
        "bare-cr-in-value",
        "nul-in-value",
        "space-before-colon",
        "no-colon",
        "obs-fold",
        "content-length",
        "transfer-encoding",
        "events-with-upgrade",
    ],
)
def test_odd_requests_are_left_to_uvicorn_s_parser(head: bytes) -> None:
    """Anything the front protocol is not sure of goes to uvicorn, which answers as if it had read it itself."""
    assert split_opening(head) is None


# -- the front protocol on a real socket pair ------------------------------------------------------------------


class Connection:
    """The client end of a connection whose server end the front protocol serves."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: ServerState) -> None:
        self.reader, self.writer, self.state = reader, writer, state

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)

    def served_by(self) -> set[type]:
        """Which protocols the server counts this connection under (uvicorn's set of open connections)."""
        return {type(protocol) for protocol in self.state.connections}

    async def until(self, check: Callable[[], bool], what: str) -> None:
        """Poll ``check`` while the server's side runs (the loop is shared), until it holds or time is up."""
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not check():
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.001)

    def buffered(self) -> bytes:
        """What the front protocol has read so far without deciding."""
        protocols: list[object] = list(self.state.connections)
        (front,) = [p for p in protocols if isinstance(p, FrontProtocol)]
        return front._buffer


@pytest.fixture
async def conn(tmp_path: Path) -> AsyncIterator[Connection]:
    """A connection served by the front protocol, with the app's real state."""
    async with front_connections(tmp_path) as open_one:
        yield Connection(*await open_one())


def masked(opcode: int, payload: bytes = b"") -> bytes:
    """A client frame (FIN set, masked), as RFC 6455 §5.2 has clients send them."""
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_head_sent_in_pieces_is_answered_once_it_is_complete(conn: Connection) -> None:
    request = WS_HEAD + b"\r\n"
    for end in (3, 50, len(request) - 1):  # each piece read on its own before the next is sent
        await conn.send(request[len(conn.buffered()) : end])
        await conn.until(lambda end=end: len(conn.buffered()) == end, f"{end} bytes read")  # type: ignore[misc]
    await conn.send(request[-1:])
    answer = await conn.answer()
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer
    assert FrontProtocol not in conn.served_by()


async def test_bytes_sent_right_after_the_head_reach_the_websocket(conn: Connection) -> None:
    """A ping pipelined behind the opening, in the same write, is answered with its pong."""
    await conn.send(WS_HEAD + b"\r\n" + masked(0x9, b"still there?"))
    assert (await conn.answer()).startswith(b"HTTP/1.1 101")
    pong = await asyncio.wait_for(conn.reader.readexactly(2 + len(b"still there?")), TIMEOUT)
    assert pong == b"\x8a\x0c" + b"still there?"


async def test_a_head_longer_than_the_limit_goes_to_uvicorn_s_parser_and_is_still_served(conn: Connection) -> None:
    await conn.send(WS_HEAD + b"X-Padding: " + b"p" * HEAD_LIMIT)
    await conn.until(lambda: conn.served_by() == {ReaderHttpProtocol}, "the hand-over to uvicorn's parser")
    await conn.send(b"\r\n\r\n")
    assert (await conn.answer()).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


async def test_an_odd_opening_goes_to_uvicorn_s_parser_and_gets_its_refusal(conn: Connection) -> None:
    """An HTTP/1.0 opening is not the front protocol's to judge: through uvicorn's parser it is refused with 505."""
    await conn.send(WS_HEAD.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n")
    answer = await conn.answer()
    assert answer.startswith(b"HTTP/1.1 505 ")
    assert b"content-type: application/problem+json" in answer.lower()


async def test_a_head_ending_in_bare_lfs_is_refused_at_once_not_left_to_time_out(conn: Connection) -> None:
    """Regression: the front protocol waited for a CRLF CRLF that a bare-LF client never sends, so the connection
    hung until the handshake deadline and was dropped without a word; uvicorn's parser refuses such a head at once
    (httptools stops at the first bare LF)."""
    await conn.send(b"GET /v1/stream HTTP/1.1\nHost: x\nUpgrade: websocket\n\n")
    assert (await conn.answer()).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    ("buffer", "start", "expected"),
    [
        (WS_HEAD, 0, False),
        (WS_HEAD[:-1], 0, False),  # a CR at the end may yet be followed by its LF
        (b"GET /v1/stream HTTP/1.1\nHost", 0, True),
        (b"GET /v1/stream HTTP/1.1\rHost", 0, True),
        (b"GET /v1/stream HTTP/1.1\r\nHost: \x00", 0, True),
        (b"GET /v1/stream HTTP/1.1\r\nHost:\tx\x80", 0, False),
        (b"GET /v1/stream HTTP/1.1\r", 23, False),
        (b"GET /v1/stream HTTP/1.1\rX", 24, True),  # searched from the byte before the new read
    ],
)
def test_a_head_is_known_to_be_no_opening_from_its_first_bare_cr_lf_or_control_byte(
    buffer: bytes, start: int, expected: bool
) -> None:
    assert cannot_be_an_opening(buffer, start) is expected


async def test_a_close_with_junk_behind_it_in_the_same_read_is_answered_with_its_own_code(conn: Connection) -> None:
    """Regression: the junk behind a reader's close (1000), read with it, made the hub answer 1002; and a ping
    before a bad frame in one read went unanswered. Each frame now counts as if read on its own."""
    junk = b"\x81\x02hi"  # unmasked: a protocol error, but after the close
    await conn.send(WS_HEAD + b"\r\n" + masked(0x9, b"?") + masked(0x8, b"\x03\xe8bye") + junk)
    assert (await conn.answer()).startswith(b"HTTP/1.1 101")
    assert await asyncio.wait_for(conn.reader.readexactly(3), TIMEOUT) == b"\x8a\x01?"  # the pong
    close = await asyncio.wait_for(conn.reader.read(), TIMEOUT)
    assert close[:1] == b"\x88" and close[2:4] == b"\x03\xe8", close
