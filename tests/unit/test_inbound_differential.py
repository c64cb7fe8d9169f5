"""Client frames read by ``transports/native/inbound.py``, held against the websockets library's own parser.

The reference is websockets' sans-I/O protocol (``websockets.protocol.Protocol`` on the server side, public API,
with the UTF-8 check of a text message its connection layer adds):
it is given the same bytes, in the same pieces, and what it makes of them (the messages it delivers, or the close
code it fails the connection with, or the code it echoes for a peer's close) must be what the hub's reader makes of
them, read the way ``StreamProtocol.data_received`` reads them: ``read_frames`` on the bytes kept between reads,
pongs dropped, pings answered, a close frame's code checked by ``close_code``, data frames joined by
``read_message``. Streams of frames with random header bits (FIN, RSV, opcode, mask, every length form, even
non-minimal ones), fragmentation with control frames between fragments, close payloads (valid and invalid codes,
a reason that is not UTF-8), lengths at every boundary (125/126/65535/65536) against limits at the same boundaries,
and random splits across reads.

Two differences are websockets' own strictness (each has its test below): it counts a control frame between
fragments against the message's limit, and it answers a close between fragments with 1002. Another is allowed only
for a frame that breaks two rules at once: which rule is reported first. The hub checks the reserved bits and a
control frame's length from the header, and the order of fragments, before the length against the limit;
websockets checks the length against the limit first. Either way the connection is failed, with 1002 or 1009;
``two_rules_broken`` says which frames those are.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side

from ticker_service.transports.native.inbound import (
    CLOSE,
    PING,
    PONG,
    Fragments,
    FrameError,
    close_code,
    read_frames,
    read_message,
)

Outcome = tuple[str, object]  # ("open", [messages and pings, in order]) or ("closed", close code or None)


@dataclass(frozen=True)
class Wire:
    """One client frame as it goes on the wire, with the header bits as drawn (not necessarily valid)."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0  # the three reserved bits, 0-7
    masked: bool = True
    length_form: int = 0  # 0: the shortest, 126: a 16-bit length, 127: a 64-bit length (non-minimal allowed)
    mask: bytes = b"\x12\x34\x56\x78"

    def serialize(self) -> bytes:
        size = len(self.payload)
        first = (0x80 if self.fin else 0) | (self.rsv << 4) | self.opcode
        mask_bit = 0x80 if self.masked else 0
        form = self.length_form or (0 if size < 126 else 126 if size < 1 << 16 else 127)
        if form == 126 and size < 1 << 16:
            header = struct.pack("!BBH", first, mask_bit | 126, size)
        elif form == 127 or form == 126:
            header = struct.pack("!BBQ", first, mask_bit | 127, size)
        else:
            header = struct.pack("!BB", first, mask_bit | size)
        if not self.masked:
            return header + self.payload
        body = bytes(b ^ self.mask[i % 4] for i, b in enumerate(self.payload))
        return header + self.mask + body

    def header_faults(self, max_size: int) -> set[str]:
        """The rules this frame breaks by its header alone."""
        faults = set()
        if self.rsv:
            faults.add("rsv")
        if self.opcode in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
            faults.add("opcode")
        if self.opcode >= 8 and (not self.fin or len(self.payload) > 125):
            faults.add("control")
        if not self.masked:
            faults.add("mask")
        if len(self.payload) > max_size:
            faults.add("size")
        return faults


PEER_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, *range(3000, 5000)}


def budgets(frames: list[Wire], max_size: int) -> list[tuple[int, bool]]:
    """The size limit websockets applies to each frame (the limit less what the open message holds so far, for
    a data frame and, as it does too, for a control frame between the fragments of a message), and whether a
    message is open."""
    limits: list[tuple[int, bool]] = []
    held = None
    for frame in frames:
        limits.append((max_size - (held or 0), held is not None))
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            held = None if frame.fin else len(frame.payload)
        elif frame.opcode == Opcode.CONT and held is not None:
            held = None if frame.fin else held + len(frame.payload)
    return limits


def budget_quirk(frames: list[Wire], max_size: int) -> bool:
    """A control frame between fragments, within every rule, but longer than websockets' budget for it (what is
    left of the message's limit): websockets fails it with 1009, the hub takes it (the limit is a message's)."""
    for frame, (budget, _) in zip(frames, budgets(frames, max_size), strict=True):
        if frame.header_faults(max_size) or frame.opcode == CLOSE:
            return False
        if frame.opcode >= 8 and len(frame.payload) > budget:
            return True
    return False


def two_rules_broken(frames: list[Wire], max_size: int) -> frozenset[Outcome]:
    """The outcomes allowed when the first frame that breaks a rule breaks two, whose checks the parsers make in
    another order: the reserved bits, a control frame's length or the order of fragments (1002) and the size limit
    (1009); a close frame's
    code (1002) and its reason's UTF-8 (1007). And a close in the middle of a fragmented message, which websockets
    answers with 1002 where the hub echoes the reader's code: either way the connection closes. Empty: the
    outcomes must be equal."""
    for frame, (budget, message_open) in zip(frames, budgets(frames, max_size), strict=True):
        faults = frame.header_faults(max_size)
        if frame.opcode == CLOSE and message_open and not faults:  # websockets' own strictness, see its test
            return frozenset({("closed", code) for code in (None, 1002, 1007, *PEER_CODES)})
        if len(frame.payload) > budget:
            faults.add("size")
        if (frame.opcode in (Opcode.TEXT, Opcode.BINARY)) == message_open and frame.opcode < 3:
            faults.add("sequence")  # a new message inside a fragmented one, or a continuation of none
        if frame.opcode == CLOSE and not faults and len(frame.payload) >= 2:
            code_bad = struct.unpack("!H", frame.payload[:2])[0] not in PEER_CODES
            if code_bad and not is_utf8(frame.payload[2:]):
                return frozenset({("closed", 1002), ("closed", 1007)})
        if len(faults) > 1 and "size" in faults and faults & {"rsv", "control", "sequence"}:
            return frozenset({("closed", 1002), ("closed", 1009)})
        if faults or frame.opcode == CLOSE:
            break
    return frozenset()


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def ours(chunks: list[bytes], max_size: int) -> Outcome:
    """What the hub's reader makes of the chunks, read as ``StreamProtocol.data_received`` reads them."""
    kept = b""
    partial: Fragments | None = None
    seen: list[tuple[str, int, bytes]] = []
    try:
        for data in chunks:
            frames, kept = read_frames(kept + data, max_size)
            while frames:  # then again on what is left, as data_received does
                for opcode, fin, payload in frames:
                    if opcode in (PING, PONG):
                        seen.append(("ping" if opcode == PING else "pong", opcode, payload))
                    elif opcode == CLOSE:
                        return ("closed", close_code(payload))
                    else:
                        message, partial = read_message(opcode, fin, payload, partial, max_size)
                        if message is not None:
                            seen.append(("message", *message))
                frames, kept = read_frames(kept, max_size)
    except FrameError as exc:
        return ("closed", exc.code)
    return ("open", seen)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def theirs(chunks: list[bytes], max_size: int) -> Outcome:
    """What websockets' server-side protocol makes of the same chunks. Its sans-I/O protocol hands over frames and
    leaves a text message's UTF-8 to the connection on top (which fails the connection with 1007): that check is
    made here, as that connection makes it, once the message is whole."""
    protocol = Protocol(Side.SERVER, max_size=max_size)
    seen: list[tuple[str, int, bytes]] = []
    message: list[Frame] = []  # it hands over a fragmented message frame by frame: joined here as the hub does
    for data in chunks:
        protocol.receive_data(data)
        for event in protocol.events_received():
            if event.opcode is Opcode.CLOSE:
                continue  # the answer it sends says what it made of it
            if event.opcode in (Opcode.PING, Opcode.PONG):
                seen.append(("ping" if event.opcode is Opcode.PING else "pong", int(event.opcode), event.data))
                continue
            message.append(event)
            if event.fin:
                opcode, payload = message[0].opcode, b"".join(bytes(f.data) for f in message)
                message = []
                if opcode is Opcode.TEXT and not is_utf8(payload):
                    return ("closed", 1007)  # its connection decodes a text message and fails it with 1007
                seen.append(("message", int(opcode), payload))
        if protocol.close_sent is not None:
            code = protocol.close_sent.code
            return ("closed", None if code == 1005 else code)
    return ("open", seen)


def agree(chunks: list[bytes], max_size: int, allowed: frozenset[Outcome] = frozenset()) -> Outcome:
    mine, reference = ours(chunks, max_size), theirs(chunks, max_size)
    if allowed and mine in allowed and reference in allowed:
        return mine
    assert mine == reference, f"ours {mine!r}, websockets {reference!r}, for {b''.join(chunks)!r}"
    return mine


# -- strategies -------------------------------------------------------------------------------------------------

PAYLOADS = st.one_of(
    st.binary(max_size=20),
    st.text(max_size=10).map(str.encode),
    st.sampled_from([b"\xff", b"\xc3", b"caf\xc3\xa9", b"\xed\xa0\x80", b'{"type": "subscribe"}']),
)


@st.composite
def valid_frames(draw: st.DrawFn) -> list[Wire]:
    """A well-formed stream: messages, some fragmented, with pings and pongs between fragments, maybe a close."""
    frames: list[Wire] = []
    for _ in range(draw(st.integers(0, 4))):
        opcode = draw(st.sampled_from([Opcode.TEXT, Opcode.BINARY]))
        parts = draw(st.lists(PAYLOADS, min_size=1, max_size=4))
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            frames.append(Wire(opcode if i == 0 else Opcode.CONT, part, fin=last, length_form=draw(FORMS)))
            if draw(st.booleans()):
                control = draw(st.sampled_from([Opcode.PING, Opcode.PONG]))
                frames.append(Wire(control, draw(st.binary(max_size=8) | st.binary(max_size=125))))
    if draw(st.booleans()):
        frames.append(Wire(Opcode.CLOSE, draw(CLOSE_PAYLOADS)))
    return frames


FORMS = st.sampled_from([0, 0, 0, 126, 127])
CLOSE_PAYLOADS = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason,
        st.sampled_from([999, 1000, 1001, 1004, 1005, 1006, 1007, 1011, 1014, 1015, 1016, 2999, 3000, 4999, 5000])
        | st.integers(0, 0xFFFF),
        st.sampled_from([b"", b"bye", b"\xff", b"caf\xc3\xa9", b"\xc3"]) | st.binary(max_size=5),
    ),
)


@st.composite
def any_frames(draw: st.DrawFn) -> Wire:
    """A frame with random header bits: often valid, sometimes one rule broken, rarely several."""
    opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10]) | st.integers(0, 15))
    payload = draw(CLOSE_PAYLOADS if opcode == 8 else PAYLOADS | st.binary(min_size=120, max_size=130))
    return Wire(
        opcode,
        payload,
        fin=draw(st.sampled_from([True, True, False])),
        rsv=draw(st.sampled_from([0, 0, 0, 0, 1, 2, 4, 7])),
        masked=draw(st.sampled_from([True] * 9 + [False])),
        length_form=draw(FORMS),
    )


def splits(data: st.DataObject, size: int) -> list[int]:
    if data.draw(st.booleans(), label="every byte its own read"):
        return list(range(1, size))
    return data.draw(st.lists(st.integers(1, max(1, size)), max_size=8), label="cuts")


SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the properties ----------------------------------------------------------------------------------------------


@SETTINGS
@given(valid_frames(), st.sampled_from([20, 125, 126, 4096]), st.data())
def test_well_formed_streams_are_read_alike_however_they_are_split(
    frames: list[Wire], max_size: int, data: st.DataObject
) -> None:
    assume(not budget_quirk(frames, max_size))  # the one known difference: see its own test below
    wire = b"".join(frame.serialize() for frame in frames)
    agree(pieces(wire, splits(data, len(wire))), max_size, two_rules_broken(frames, max_size))


@SETTINGS
@given(st.lists(any_frames(), min_size=1, max_size=5), st.sampled_from([20, 125, 4096]), st.data())
@example([Wire(Opcode.TEXT, b"sub", fin=False), Wire(Opcode.PING, b"?"), Wire(Opcode.CONT, b"scribe")], 4096, None)
def test_streams_with_broken_rules_fail_alike(frames: list[Wire], max_size: int, data: st.DataObject | None) -> None:
    assume(not budget_quirk(frames, max_size))
    wire = b"".join(frame.serialize() for frame in frames)
    chunks = pieces(wire, splits(data, len(wire))) if data is not None else [wire]
    agree(chunks, max_size, two_rules_broken(frames, max_size))


@SETTINGS
@given(CLOSE_PAYLOADS, st.data())
@example(b"", None)
@example(b"\x03", None)
@example(struct.pack("!H", 1005), None)
@example(struct.pack("!H", 1000) + b"\xff", None)
@example(struct.pack("!H", 4999) + b"caf\xc3\xa9", None)
@example(struct.pack("!H", 1000) + b"x" * 123, None)
def test_close_payloads_get_the_same_answer(payload: bytes, data: st.DataObject | None) -> None:
    wire = Wire(Opcode.CLOSE, payload).serialize()
    chunks = pieces(wire, splits(data, len(wire))) if data is not None else [wire]
    outcome = agree(chunks, 4096, two_rules_broken([Wire(Opcode.CLOSE, payload)], 4096))
    if len(payload) >= 2 and outcome != ("closed", 1002) and outcome != ("closed", 1007):
        assert outcome == ("closed", Close.parse(payload).code)


@pytest.mark.parametrize("size", [0, 1, 124, 125, 126, 127, 65_535, 65_536, 65_537])
@pytest.mark.parametrize("limit", [125, 126, 65_535, 65_536])
@pytest.mark.parametrize("form", [0, 126, 127])
def test_lengths_at_every_boundary_against_limits_at_every_boundary(size: int, limit: int, form: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = Wire(Opcode.BINARY, payload, length_form=form)
    wire = frame.serialize()
    outcome = agree([wire], limit)
    assert outcome == (("open", [("message", 2, payload)]) if size <= limit else ("closed", 1009))
    # The same frame as the fragments of a message, with a ping between them: the limit is the message's.
    half = size // 2
    fragmented = (
        Wire(Opcode.BINARY, payload[:half], fin=False, length_form=form).serialize()
        + Wire(Opcode.PING, b"p").serialize()
        + Wire(Opcode.CONT, payload[half:], length_form=form).serialize()
    )
    agree([fragmented[:7], fragmented[7:]], limit)


@pytest.mark.parametrize("size", [125, 126])
@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frames_at_the_length_boundary(size: int, opcode: Opcode) -> None:
    payload = struct.pack("!H", 1000) + b"x" * (size - 2) if opcode == Opcode.CLOSE else b"x" * size
    outcome = agree([Wire(opcode, payload).serialize()], 4096)
    assert (outcome == ("closed", 1002)) == (size == 126)


def test_a_ping_between_fragments_counts_against_no_message_limit() -> None:
    """The one difference found, websockets' and not a desynchronisation: it checks a control frame between the
    fragments of a message against what is left of the message's limit (10 of 20 bytes here) and fails the
    connection with 1009; a ping is not part of the message (RFC 6455 §5.4), so the hub answers it and reads on."""
    frames = [Wire(Opcode.TEXT, b"x" * 10, fin=False), Wire(Opcode.PING, b"p" * 11), Wire(Opcode.CONT, b"y" * 10)]
    assert budget_quirk(frames, 20)
    wire = [b"".join(frame.serialize() for frame in frames)]
    assert theirs(wire, 20) == ("closed", 1009)
    assert ours(wire, 20) == ("open", [("ping", 9, b"p" * 11), ("message", 1, b"x" * 10 + b"y" * 10)])


def test_a_close_between_fragments_is_echoed() -> None:
    """websockets answers a close that comes between the fragments of a message with 1002 (an incomplete message);
    RFC 6455 §5.4 lets control frames come between fragments, and the hub echoes the reader's code. Both close."""
    wire = [Wire(Opcode.TEXT, b"sub", fin=False).serialize() + Wire(Opcode.CLOSE, b"\x03\xe8").serialize()]
    assert theirs(wire, 4096) == ("closed", 1002)
    assert ours(wire, 4096) == ("closed", 1000)
