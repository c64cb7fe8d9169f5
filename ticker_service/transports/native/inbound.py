"""What a reader sends on its ``/v1/stream`` WebSocket: masked client frames (RFC 6455 §5), read without an object
per connection.

A reader only ever sends pongs, the odd ``subscribe`` message, pings and a close, so the hub needs a small part
of the protocol, and it needs it for every one of tens of thousands of mostly silent connections: a library
protocol object per connection (a parser coroutine, a stream buffer, a logger, a UUID) was a sixth of the accept
path's Python time and a good part of an idle connection's memory. Here a connection keeps only its unparsed bytes.

No extension is ever negotiated, so a reserved bit is a protocol error (a compressed frame is refused, never
inflated); a frame longer than the message limit is refused from its header, before its payload is buffered.
A message may come in fragments (RFC 6455 §5.4): :class:`Fragments` joins them, up to the same limit.

Close codes follow RFC 6455 §7.4.1: 1002 for a malformed frame or a continuation with nothing to continue, 1007
for a text message that is not UTF-8, 1009 for a message over the limit.

Unmasking is ours (:func:`unmask`), not the websockets library's: its fast ``apply_mask`` lives in
``websockets.speedups``, which is not public API. A reader's frames are pongs (empty: the hub's pings carry no
payload), the odd ``subscribe`` message and a close, so a pure-Python XOR is fast enough (0.8 µs for 125 bytes).
"""

from __future__ import annotations

import struct

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = frozenset({CONT, TEXT, BINARY})
_CONTROL = frozenset({CLOSE, PING, PONG})
# Close codes a peer may send (RFC 6455 §7.4, the IANA registry, and the private 3000–4999 range).
_PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class FrameError(Exception):
    """The reader broke the protocol: close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


Frame = tuple[int, bool, bytes]  # opcode, FIN, unmasked payload


def unmask(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the 4-byte ``mask`` repeated (RFC 6455 §5.3), as one big-integer operation."""
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def read_frames(buffer: bytes, max_size: int) -> tuple[list[Frame], bytes]:
    """The complete frames at the start of ``buffer`` and the bytes left over (the start of the next frame).

    :class:`FrameError` if the first frame breaks the protocol. A bad frame behind good ones is left over, for the
    next call to refuse once the caller has taken the good ones: a close frame or a message that came in the same
    read as a bad frame counts as it would in a read of its own (websockets' parser reads frame by frame too).
    """
    frames: list[Frame] = []
    pos = 0
    size = len(buffer)
    while size - pos >= 2:
        first, second = buffer[pos], buffer[pos + 1]
        if first & 0x70:
            return _refused(FrameError(1002, "reserved bits set: no extension was negotiated"), frames, buffer, pos)
        opcode = first & 0x0F
        fin = bool(first & 0x80)
        if not second & 0x80:
            return _refused(FrameError(1002, "client frames must be masked"), frames, buffer, pos)
        length = second & 0x7F
        start = pos + 2
        if length == 126:
            if size - pos < 4:
                break
            (length,) = struct.unpack_from("!H", buffer, start)
            start += 2
        elif length == 127:
            if size - pos < 10:
                break
            (length,) = struct.unpack_from("!Q", buffer, start)
            start += 8
        if opcode in _CONTROL:
            if not fin or length > 125:
                return _refused(
                    FrameError(1002, "control frames must be final and at most 125 bytes"), frames, buffer, pos
                )
        elif opcode not in _DATA:
            return _refused(FrameError(1002, f"unknown opcode {opcode}"), frames, buffer, pos)
        if length > max_size:
            return _refused(FrameError(1009, f"frame of {length} bytes; the limit is {max_size}"), frames, buffer, pos)
        end = start + 4 + length
        if end > size:
            break
        payload = unmask(buffer[start + 4 : end], buffer[start : start + 4]) if length else b""
        frames.append((opcode, fin, payload))
        pos = end
    return frames, buffer[pos:] if pos else buffer


def _refused(error: FrameError, frames: list[Frame], buffer: bytes, pos: int) -> tuple[list[Frame], bytes]:
    """Raise ``error`` for the frame at ``pos`` if it is the first; else the frames before it, and it left over."""
    if not frames:
        raise error
    return frames, buffer[pos:]


def close_code(payload: bytes) -> int | None:
    """The status code of a received close frame (``None``: none given); :class:`FrameError` if it is invalid."""
    if not payload:
        return None
    if len(payload) == 1:
        raise FrameError(1002, "a close frame's payload is a 2-byte code and a reason")
    code: int = struct.unpack_from("!H", payload)[0]
    if code not in _PEER_CODES and not 3000 <= code <= 4999:
        raise FrameError(1002, f"invalid close code {code}")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "a close reason must be UTF-8") from None
    return code


class Fragments:
    """A data message coming in fragments (RFC 6455 §5.4): the first frame's opcode and the payloads so far."""

    __slots__ = ("opcode", "parts", "size")

    def __init__(self, opcode: int, payload: bytes) -> None:
        self.opcode = opcode
        self.parts = [payload]
        self.size = len(payload)


def read_message(
    opcode: int, fin: bool, payload: bytes, partial: Fragments | None, max_size: int
) -> tuple[tuple[int, bytes] | None, Fragments | None]:
    """Take one data frame: the message it completes (``(opcode, payload)``, if any) and the fragments still open.

    A text message is checked to be UTF-8. :class:`FrameError`: a continuation with nothing to continue, a new
    message before the last one ended (1002), a message over ``max_size`` (1009), a text that is not UTF-8 (1007).
    """
    if opcode == CONT:
        if partial is None:
            raise FrameError(1002, "a continuation frame with no message to continue")
        partial.parts.append(payload)
        partial.size += len(payload)
        if partial.size > max_size:
            raise FrameError(1009, f"message over {max_size} bytes")
        if not fin:
            return None, partial
        opcode, payload = partial.opcode, b"".join(partial.parts)
    elif partial is not None:
        raise FrameError(1002, "a new message before the fragmented one ended")
    elif not fin:
        return None, Fragments(opcode, payload)
    if opcode == TEXT:
        try:
            payload.decode()
        except UnicodeDecodeError:
            raise FrameError(1007, "a text message must be UTF-8") from None
    return (opcode, payload), None
