"""The WebSocket opening handshake of ``/v1/stream`` (RFC 6455 §4.2), from a request already split into headers.

A reconnect storm is thousands of handshakes a second. The ``websockets`` library's ``accept()`` copies the headers
into its own ``Headers`` object, parses each with general grammar parsers and builds a ``Response`` object that is
serialised again: that was half of the accept path's Python time. The checks here are the same (method, HTTP
version, ``Connection``, ``Upgrade``, ``Sec-WebSocket-Key``, ``Sec-WebSocket-Version``) on the raw
``(lower-case name, value)`` pairs, and the ``101`` answer is one bytes template. Refusals are problem documents.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class Refusal(Exception):
    """The request cannot open a WebSocket: the HTTP status, the problem's detail, headers to add, field errors."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: Sequence[tuple[bytes, bytes]] = (),
        *,
        errors: Sequence[dict[str, str]] = (),
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.errors = errors  # the problem document's ``errors`` member


class Opening:
    """What a valid opening request says: the accept key to answer with and the headers the hub looks at."""

    __slots__ = ("accept", "authorization", "host", "origin", "subprotocols")

    def __init__(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        connection_upgrade = False
        upgrade: list[bytes] = []
        keys: list[bytes] = []
        versions: list[bytes] = []
        self.subprotocols: list[str] = []
        self.origin: str | None = None
        self.host: str | None = None
        self.authorization: str | None = None
        for name, value in headers:
            if name == b"connection":
                # Nearly always exactly "Upgrade" (or "keep-alive, Upgrade" from a browser): a list only then.
                lowered = value.lower()
                connection_upgrade = (
                    connection_upgrade
                    or lowered == b"upgrade"
                    or (b"upgrade" in lowered and any(token.strip() == b"upgrade" for token in lowered.split(b",")))
                )
            elif name == b"upgrade":
                if b"," in value:
                    upgrade += [token.strip() for token in value.split(b",") if token.strip()]
                elif token := value.strip():
                    upgrade.append(token)
            elif name == b"sec-websocket-key":
                keys.append(value)
            elif name == b"sec-websocket-version":
                versions.append(value)
            elif name == b"sec-websocket-protocol":
                self.subprotocols += [p.strip() for p in value.decode("latin-1").split(",") if p.strip()]
            elif name == b"origin":
                self.origin = value.decode("latin-1")
            elif name == b"host":
                self.host = value.decode("latin-1")
            elif name == b"authorization":
                self.authorization = value.decode("latin-1")
        if not connection_upgrade:
            raise Refusal(426, "The Connection header must include 'Upgrade'.", [(b"upgrade", b"websocket")])
        if len(upgrade) != 1 or upgrade[0].lower() != b"websocket":
            raise Refusal(426, "The Upgrade header must be 'websocket'.", [(b"upgrade", b"websocket")])
        if len(versions) != 1 or versions[0].strip() != b"13":
            raise Refusal(
                426,
                "Sec-WebSocket-Version must be 13.",
                [(b"upgrade", b"websocket"), (b"sec-websocket-version", b"13")],
            )
        if len(keys) != 1:
            raise Refusal(400, "Send exactly one Sec-WebSocket-Key header.")
        key = keys[0].strip()
        try:
            raw = base64.b64decode(key, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 16:
            raise Refusal(400, "Sec-WebSocket-Key must be 16 random bytes in base64.")
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())


def read_opening(method: str, http_version: str, headers: Iterable[tuple[bytes, bytes]]) -> Opening:
    """Check an opening request; :class:`Refusal` says why it cannot open a WebSocket."""
    if method != "GET":
        raise Refusal(405, "A WebSocket is opened with GET.", [(b"allow", b"GET")])
    if http_version != "1.1":
        raise Refusal(505, "A WebSocket is opened over HTTP/1.1.")
    return Opening(headers)


def switching_protocols(
    opening: Opening, subprotocol: str | None, default_headers: Iterable[tuple[bytes, bytes]]
) -> bytes:
    """The ``101`` answer that opens the WebSocket."""
    head = [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: "]
    head.append(opening.accept)
    if subprotocol is not None:
        head += [b"\r\nsec-websocket-protocol: ", subprotocol.encode()]
    for name, value in default_headers:
        head += [b"\r\n", name, b": ", value]
    head.append(b"\r\n\r\n")
    return b"".join(head)
