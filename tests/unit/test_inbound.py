"""What readers send on a WebSocket: client frames read by ``transports.inbound``, checked against the websockets
library's RFC 6455 encoder (masked, as clients must send them)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from ticker_service.transports.native.inbound import FrameError, close_code, read_frames

LIMIT = 64 * 1024


def masked(opcode: Opcode, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    # The library refuses to build invalid frames: the bits it would refuse are set afterwards.
    wire = Frame(opcode, payload).serialize(mask=True, extensions=[])
    first = wire[0] & ~(0 if fin else 0x80) | (0x40 if rsv1 else 0)
    return bytes([first]) + wire[1:]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536])
def test_each_length_form_is_read(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frames, rest = read_frames(masked(Opcode.BINARY, payload), 1 << 20)
    assert frames == [(0x2, True, payload)] and rest == b""


@given(
    st.lists(
        st.tuples(st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG]), st.binary(max_size=300)),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(min_value=1, max_value=400), max_size=8),
)
def test_frames_split_anywhere_across_reads_come_out_whole_and_in_order(
    messages: list[tuple[Opcode, bytes]], cuts: list[int]
) -> None:
    messages = [(op, data[:125] if op in (Opcode.PING, Opcode.PONG) else data) for op, data in messages]
    wire = b"".join(masked(op, data) for op, data in messages)
    received = []
    buffer = b""
    start = 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        frames, buffer = read_frames(buffer + wire[start:cut], LIMIT)
        received += frames
        start = max(start, cut)
    assert buffer == b""
    assert received == [(int(op), True, data) for op, data in messages]


def test_fragments_keep_their_fin_bit() -> None:
    wire = masked(Opcode.TEXT, b"sub", fin=False) + masked(Opcode.CONT, b"scribe")
    assert read_frames(wire, LIMIT)[0] == [(0x1, False, b"sub"), (0x0, True, b"scribe")]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (Frame(Opcode.TEXT, b"hi").serialize(mask=False, extensions=[]), 1002),  # clients must mask
        (masked(Opcode.TEXT, b"x", rsv1=True), 1002),  # compressed: no extension was negotiated
        (masked(Opcode.PING, b"x", fin=False), 1002),  # a fragmented control frame
        (bytes([0x89, 0x80 | 126]) + struct.pack("!H", 126) + b"\0" * 130, 1002),  # a control frame over 125
        (bytes([0x83, 0x80]) + b"\0" * 4, 1002),  # opcode 3 is reserved
        (bytes([0x82, 0x80 | 127]) + struct.pack("!Q", LIMIT + 1), 1009),  # refused from the header alone
    ],
)
def test_protocol_errors_say_how_to_close(wire: bytes, code: int) -> None:
    with pytest.raises(FrameError) as error:
        read_frames(wire, LIMIT)
    assert error.value.code == code


def test_close_codes() -> None:
    assert close_code(b"") is None
    assert close_code(Close(1000, "bye").serialize()) == 1000
    assert close_code(Close(4001, "app").serialize()) == 4001
    for bad, code in ((b"\x03", 1002), (struct.pack("!H", 1005), 1002), (struct.pack("!H", 999), 1002)):
        with pytest.raises(FrameError) as error:
            close_code(bad)
        assert error.value.code == code
    with pytest.raises(FrameError) as error:
        close_code(struct.pack("!H", 1000) + b"\xff")
    assert error.value.code == 1007


def test_a_bad_frame_behind_good_ones_is_refused_only_once_they_are_taken() -> None:
    """Regression: a bad frame in the same read as good ones refused the read whole, so the close code hung on how
    TCP cut the bytes (a reader's close 1000 followed by junk got 1002; a bad text then a bad frame, 1002 or 1007).
    Now the good frames come first, the bad one is left over, and the next call refuses it, as websockets does."""
    good = masked(Opcode.CLOSE, Close(1000, "bye").serialize())
    bad = Frame(Opcode.TEXT, b"hi").serialize(mask=False, extensions=[])
    frames, rest = read_frames(good + bad, LIMIT)
    assert frames == [(0x8, True, Close(1000, "bye").serialize())] and rest == bad
    with pytest.raises(FrameError) as error:
        read_frames(rest, LIMIT)
    assert error.value.code == 1002
