"""Messages from a reader's client frames (RFC 6455 §5.4, §7.4.1): bytes in, whole messages or close codes out.
Client frames are built by the websockets library's own public encoder, masked as clients must send them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from ticker_service.transports.native.inbound import Fragments, FrameError, read_frames, read_message, unmask

LIMIT = 1024


def client_frame(opcode: Opcode, payload: bytes, *, fin: bool = True) -> bytes:
    return Frame(opcode, payload, fin=fin).serialize(mask=True, extensions=[])


def messages(wire: bytes, limit: int = LIMIT) -> list[tuple[int, bytes]]:
    """Feed ``wire`` to the reader's side as the hub does: frames, then messages."""
    frames, rest = read_frames(wire, limit)
    assert rest == b""
    out: list[tuple[int, bytes]] = []
    partial: Fragments | None = None
    for opcode, fin, payload in frames:
        if opcode >= 0x8:
            continue  # control frames are the connection's business, not the message's
        message, partial = read_message(opcode, fin, payload, partial, limit)
        if message is not None:
            out.append(message)
    assert partial is None
    return out


def close_code_of(wire: bytes, limit: int = LIMIT) -> int:
    with pytest.raises(FrameError) as error:
        messages(wire, limit)
    return error.value.code


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_unmask_is_the_rfc_xor(data: bytes, mask: bytes) -> None:
    assert unmask(data, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def test_a_single_frame_text_message() -> None:
    assert messages(client_frame(Opcode.TEXT, b'{"type": "subscribe"}')) == [(0x1, b'{"type": "subscribe"}')]


@given(st.text(max_size=300), st.lists(st.integers(min_value=0, max_value=1200), max_size=5))
def test_a_fragmented_text_message_is_joined(text: str, cuts: list[int]) -> None:
    """§5.4: a message may be split into any number of frames; control frames may come between them."""
    data = text.encode()
    points = sorted({min(c, len(data)) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    wire = client_frame(Opcode.TEXT, parts[0], fin=len(parts) == 1)
    for i, part in enumerate(parts[1:], 2):
        wire += client_frame(Opcode.PING, b"") + client_frame(Opcode.CONT, part, fin=i == len(parts))
    assert messages(wire) == [(0x1, data)]


def test_a_fragmented_message_over_the_limit_is_1009() -> None:
    half = b"x" * (LIMIT // 2 + 1)  # each frame is under the limit, the message is not
    assert close_code_of(client_frame(Opcode.TEXT, half, fin=False) + client_frame(Opcode.CONT, half)) == 1009
    assert messages(client_frame(Opcode.TEXT, half[:-2], fin=False) + client_frame(Opcode.CONT, half)) != []


def test_invalid_utf8_text_is_1007() -> None:
    assert close_code_of(client_frame(Opcode.TEXT, b"\xff\xfe")) == 1007
    # A character split across fragments is fine; the message as a whole is checked.
    snowman = "☃".encode()
    assert messages(client_frame(Opcode.TEXT, snowman[:1], fin=False) + client_frame(Opcode.CONT, snowman[1:])) == [
        (0x1, snowman)
    ]
    assert close_code_of(client_frame(Opcode.TEXT, snowman[:1], fin=False) + client_frame(Opcode.CONT, b"a")) == 1007


def test_binary_messages_are_not_checked_as_text() -> None:
    assert messages(client_frame(Opcode.BINARY, b"\xff")) == [(0x2, b"\xff")]


def test_a_stray_continuation_is_1002() -> None:
    assert close_code_of(client_frame(Opcode.CONT, b"x")) == 1002


def test_a_new_message_inside_a_fragmented_one_is_1002() -> None:
    wire = client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b")
    assert close_code_of(wire) == 1002
