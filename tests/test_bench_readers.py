"""The fan-out benchmark's readers (``bench/fanout_wire.py``): frames, chunks and events fed as bytes, no sockets."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from bench.fanout_wire import SseReader, Tally, WsReader, find_marker, marker, masked_frame

SENT = 1_700_000_000.25
NOW = SENT + 0.5
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FakeTransport:
    """Records what a reader writes, and whether it closed."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


def text(seq: int, size: int = 300, phase: int = 1) -> bytes:
    head = marker(phase, seq, SENT)
    return (head + "x" * max(0, size - len(head))).encode()


def ticker_event(seq: int) -> bytes:
    """Like a ticker ``/v1/stream`` message: the marker inside the flash's headline."""
    flash = {"id": "f1", "headlines": [{"lang": "en", "value": text(seq, 120).decode()}], "urgency": 1}
    return json.dumps({"type": "flash", "event_id": "1-0", "flash": flash}).encode()


def server_frame(payload: bytes, opcode: Opcode = Opcode.TEXT, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=False, extensions=[])


def client_frame(data: bytes) -> Frame:
    """Parse what a reader wrote with the websockets library, insisting that it is masked."""
    stream = StreamReader()
    stream.feed_data(data)
    parser = Frame.parse(stream.read_exact, mask=True)
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame: Frame = done.value.value
    return frame


def open_ws(tally: Tally) -> tuple[WsReader, FakeTransport]:
    """A WebSocket reader past its handshake."""
    reader = WsReader("ws://127.0.0.1:1/sub", tally)
    transport = FakeTransport()
    reader.connection_made(transport)  # type: ignore[arg-type]
    reader.data_received(upgrade_response(transport.written[0]))
    assert reader.opened.done() and reader.opened.exception() is None
    transport.written.clear()
    return reader, transport


def upgrade_response(request: bytes) -> bytes:
    key = next(line.split(b": ", 1)[1] for line in request.split(b"\r\n") if line.startswith(b"Sec-WebSocket-Key"))
    accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    return head + b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"


def deliveries(tally: Tally, phase: int = 1) -> dict[str, list[object]]:
    report = tally.report(phase)
    assert isinstance(report["messages"], dict)
    return report["messages"]


def test_marker_is_found_in_ticker_json_and_in_raw_bodies() -> None:
    """The same byte search finds the marker in a ticker event and at the start of a peer's body."""
    assert find_marker(ticker_event(7)) == (1, 7, SENT)
    assert find_marker(text(8)) == (1, 8, SENT)
    assert find_marker(b'{"type":"subscribed"}') is None
    assert find_marker(b"FANOUT 1 2 not-a-time |") is None
    assert find_marker(b"FANOUT 1 2 3.0 without the end") is None


def test_tally_parses_each_marker_once_and_counts_duplicates_per_reader() -> None:
    """Many readers of one message share one parsed entry; a reader getting it twice is a duplicate."""
    tally = Tally()
    data = text(3)
    readers: list[set[object]] = [set() for _ in range(5)]
    for seen in readers:
        tally.record(seen, data, 0, len(data), NOW)  # type: ignore[arg-type]
    tally.record(readers[0], data, 0, len(data), NOW + 1)  # type: ignore[arg-type]
    tally.record(readers[0], b"no marker", 0, 9, NOW)  # type: ignore[arg-type]
    assert len(tally.marks) == 1
    report = tally.report(1)
    assert report["received"] == 5 and report["duplicates"] == 1 and report["foreign"] == 1
    assert report["bytes"] == 5 * len(data)
    assert report["latencies_us"] == [500_000] * 5
    assert report["messages"] == {"3": [5, NOW, NOW]}  # readers, last arrival, first arrival (a duplicate is not one)
    assert tally.report(2)["received"] == 0


@pytest.mark.parametrize(
    ("payload", "header"),
    [
        (text(1, 125), b"\x81\x7d"),
        (text(1, 126), b"\x81\x7e\x00\x7e"),
        (text(1, 65_535), b"\x81\x7e\xff\xff"),
        (text(1, 65_536), b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
async def test_ws_reader_reads_each_length_form(payload: bytes, header: bytes) -> None:
    """7-bit, 16-bit (126) and 64-bit (127) lengths, hand-written bytes."""
    tally = Tally()
    reader, transport = open_ws(tally)
    reader.data_received(header + payload)
    assert deliveries(tally)["1"][0] == 1
    assert tally.report(1)["bytes"] == len(payload)
    assert not transport.closing and tally.violations == 0


async def test_ws_reader_parses_frames_that_follow_the_handshake_in_the_same_read() -> None:
    """The response head goes to websockets; a frame right behind it is parsed here."""
    tally = Tally()
    reader = WsReader("ws://127.0.0.1:1/sub", tally)
    transport = FakeTransport()
    reader.connection_made(transport)  # type: ignore[arg-type]
    reader.data_received(upgrade_response(transport.written[0]) + server_frame(text(4)))
    assert reader.opened.done() and reader.opened.exception() is None
    assert tally.report(1)["received"] == 1


async def test_ws_reader_refuses_a_bad_accept_key() -> None:
    reader = WsReader("ws://127.0.0.1:1/sub", Tally())
    transport = FakeTransport()
    reader.connection_made(transport)  # type: ignore[arg-type]
    reader.data_received(upgrade_response(b"Sec-WebSocket-Key: wrong"))
    assert isinstance(reader.opened.exception(), ConnectionError) and transport.closing


@given(cuts=st.lists(st.integers(min_value=0, max_value=900), max_size=12))
async def test_frames_split_anywhere_across_reads_are_reassembled(cuts: list[int]) -> None:
    """Three messages (one of them fragmented around a ping), cut into reads at arbitrary points."""
    tally = Tally()
    reader, transport = open_ws(tally)
    second = text(2, 400)
    stream = (
        server_frame(text(1, 200))
        + server_frame(second[:10], fin=False)
        + server_frame(b"hi", Opcode.PING)
        + server_frame(second[10:300], Opcode.CONT, fin=False)
        + server_frame(second[300:], Opcode.CONT)
        + server_frame(text(3, 150))
    )
    bounds = [0, *sorted(min(cut, len(stream)) for cut in cuts), len(stream)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        if stop > start:
            reader.data_received(stream[start:stop])
    assert sorted(deliveries(tally)) == ["1", "2", "3"]
    assert tally.report(1)["bytes"] == 200 + 400 + 150
    assert [client_frame(w).data for w in transport.written] == [b"hi"]
    assert reader.buffer == b"" and not transport.closing


async def test_ping_is_answered_with_a_masked_pong() -> None:
    """A client's frames must be masked (RFC 6455 §5.3): the pong parses as masked and carries the ping's data."""
    reader, transport = open_ws(Tally())
    reader.data_received(b"\x89\x04ping")
    (pong,) = transport.written
    assert pong[0] == 0x8A and pong[1] == 0x80 | 4 and pong[6:] != b"ping"
    frame = client_frame(pong)
    assert frame.opcode is Opcode.PONG and frame.data == b"ping" and frame.fin
    empty = client_frame(masked_frame(0x8A, b""))
    assert empty.opcode is Opcode.PONG and empty.data == b""


async def test_close_is_echoed_masked_and_the_socket_closed() -> None:
    reader, transport = open_ws(Tally())
    reader.data_received(b"\x88\x07\x03\xe8going" + server_frame(text(5)))
    (close,) = transport.written
    frame = client_frame(close)
    assert frame.opcode is Opcode.CLOSE and frame.data == struct.pack("!H", 1000)
    assert transport.closing and reader.tally.report(1)["received"] == 0


@pytest.mark.parametrize(
    "frame",
    [
        b"\x81\x85abcd" + b"xxxxx",  # masked
        b"\xc1\x01x",  # RSV1 without an extension
        b"\x83\x01x",  # reserved opcode
        b"\x80\x01x",  # continuation of nothing
        b"\x01\x01x\x81\x01y",  # a new message inside a fragmented one
        b"\x09\x01x",  # fragmented ping
        b"\x81\x7e\x00\x05hello",  # 16-bit length for 5 bytes
        b"\x81\x7f" + struct.pack("!Q", 200) + b"x" * 200,  # 64-bit length for 200 bytes
        b"\x88\x01x",  # 1-byte close payload
    ],
)
async def test_protocol_violations_close_the_reader_loudly(frame: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    """Counted, written to stderr, answered with close 1002, and the socket closed."""
    tally = Tally()
    reader, transport = open_ws(tally)
    reader.data_received(frame)
    assert tally.violations == 1 and transport.closing
    assert client_frame(transport.written[-1]).data == struct.pack("!H", 1002)
    assert "protocol violation" in capsys.readouterr().err


def sse_reader(tally: Tally, chunked: bool) -> SseReader:
    reader = SseReader("http://127.0.0.1:1/events?lang=en", tally)
    reader.connection_made(FakeTransport())  # type: ignore[arg-type]
    coding = b"Transfer-Encoding: chunked\r\n" if chunked else b""
    reader.data_received(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + coding + b"\r\n")
    assert reader.opened.done() and reader.opened.exception() is None
    return reader


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@given(cuts=st.lists(st.integers(min_value=0, max_value=700), max_size=10))
async def test_sse_chunked_events_split_anywhere(cuts: list[int]) -> None:
    """Comments, id/event fields, a two-line data event, CRLF lines and several events per chunk."""
    tally = Tally()
    reader = sse_reader(tally, chunked=True)
    body = (
        chunk(b": ticker stream\nretry: 2000\n\n")
        + chunk(b"id: 1\nevent: flash\ndata: " + ticker_event(1) + b"\n\n" + b"data: " + text(2, 100) + b"\n\n")
        + chunk(b"data: " + text(3, 50)[:35] + b"\ndata:" + text(3, 50)[35:] + b"\n\n")
        + chunk(b": keepalive\r\n\r\ndata: " + text(4, 60) + b"\r\n\r\n")
    )
    bounds = [0, *sorted(min(cut, len(body)) for cut in cuts), len(body)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        if stop > start:
            reader.data_received(body[start:stop])
    report = tally.report(1)
    assert sorted(deliveries(tally)) == ["1", "2", "3", "4"]
    assert report["bytes"] == len(ticker_event(1)) + 100 + 51 + 60
    assert report["foreign"] == 0 and report["duplicates"] == 0
    assert reader.raw == b"" and reader.text == b""


async def test_sse_plain_body_and_a_bad_chunk() -> None:
    tally = Tally()
    reader = sse_reader(tally, chunked=False)
    reader.data_received(b"data: " + text(9) + b"\n\ndata: {}\n\n")
    assert tally.report(1)["received"] == 1 and tally.foreign == 1
    broken = sse_reader(Tally(), chunked=True)
    broken.data_received(b"zz\r\nxx\r\n")
    assert broken.tally.violations == 1 and broken.transport is not None and broken.transport.is_closing()
