"""Wire bytes: WebSocket frames byte-exact against the websockets library's RFC 6455 encoder; SSE framing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from ticker_service.events import Event
from ticker_service.wire import http_chunk, ws_close_frame, ws_frame

from ..support.readers import parse_sse


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 100_000])
def test_text_frames_match_rfc6455_encoding(size: int) -> None:
    payload = b"x" * size
    assert ws_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


@given(st.text(max_size=2000))
def test_any_text_payload_encodes_like_websockets(text: str) -> None:
    payload = text.encode()
    assert ws_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


def test_close_frame_matches_and_long_reasons_are_cut() -> None:
    expected = Frame(Opcode.CLOSE, Close(4008, "too slow").serialize()).serialize(mask=False, extensions=[])
    assert ws_close_frame(4008, "too slow") == expected
    assert len(ws_close_frame(1000, "é" * 200)) <= 2 + 125


def test_http_chunk() -> None:
    assert http_chunk(b"hello") == b"5\r\nhello\r\n"
    assert http_chunk(b"x" * 255).startswith(b"ff\r\n")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.text(), json_values, max_size=6), st.sampled_from(["flash", "update", "withdraw"]))
def test_sse_frame_is_one_event_whatever_the_flash_contains(flash: dict[str, object], kind: str) -> None:
    """CR, LF, NUL or U+2028 in any value cannot break out of the data line (no field injection)."""
    flash = {"uri": "urn:ticker:flash:x", **flash}
    event = Event("e1-1700000000000-3", kind, flash)  # type: ignore[arg-type]
    parsed = parse_sse(event.to_sse())
    assert len(parsed) == 1
    assert parsed[0]["id"] == "e1-1700000000000-3"
    assert parsed[0]["event"] == kind
    assert json.loads(parsed[0]["data"]) == flash
    assert set(parsed[0]) == {"id", "event", "data"}
