"""The WebSocket opening handshake (``transports/native/handshake.py``) on raw header pairs, without a socket:
every refusal with its status and the headers it adds, and the accept key per RFC 6455."""

from __future__ import annotations

import base64

import pytest

from ticker_service.transports.native.handshake import Refusal, read_opening, switching_protocols

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example key
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # and the accept value it gives for it
UPGRADE = [(b"upgrade", b"websocket")]


def opening_headers(**changes: bytes | None) -> list[tuple[bytes, bytes]]:
    """A browser's opening request as (lower-case name, value) pairs; ``name=None`` drops a header."""
    headers = {
        b"host": b"news.example",
        b"connection": b"Upgrade",
        b"upgrade": b"websocket",
        b"sec-websocket-key": KEY,
        b"sec-websocket-version": b"13",
    }
    for name, value in changes.items():
        header = name.replace("_", "-").encode()
        if value is None:
            headers.pop(header)
        else:
            headers[header] = value
    return list(headers.items())


def refusal(method: str = "GET", version: str = "1.1", headers: list[tuple[bytes, bytes]] | None = None) -> Refusal:
    with pytest.raises(Refusal) as caught:
        read_opening(method, version, opening_headers() if headers is None else headers)
    return caught.value


def test_a_browser_opening_is_accepted_with_rfc_6455_s_accept_key() -> None:
    opening = read_opening("GET", "1.1", opening_headers(origin=b"https://news.example", authorization=b"Bearer x"))
    assert opening.accept == ACCEPT
    assert (opening.origin, opening.host, opening.authorization) == ("https://news.example", "news.example", "Bearer x")
    assert opening.subprotocols == []


def test_header_lists_and_case_are_read_as_rfc_9110_says() -> None:
    """``Connection`` is a token list (``keep-alive, Upgrade``), tokens are case-insensitive, the key is trimmed."""
    opening = read_opening(
        "GET",
        "1.1",
        opening_headers(
            connection=b"keep-alive, upgrade",
            upgrade=b"WebSocket",
            sec_websocket_key=b" " + KEY + b" ",
            sec_websocket_protocol=b"ticker.v1, other",
        ),
    )
    assert opening.accept == ACCEPT
    assert opening.subprotocols == ["ticker.v1", "other"]


def test_switching_protocols_is_the_101_answer_with_accept_subprotocol_and_default_headers() -> None:
    opening = read_opening("GET", "1.1", opening_headers())
    answer = switching_protocols(opening, "ticker.v1", [(b"server", b"ticker")])
    assert answer == (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + ACCEPT + b"\r\nsec-websocket-protocol: ticker.v1\r\nserver: ticker\r\n\r\n"
    )
    assert b"sec-websocket-protocol" not in switching_protocols(opening, None, [])
    assert switching_protocols(opening, None, []).endswith(ACCEPT + b"\r\n\r\n")


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "get"])
def test_another_method_is_405_with_allow_get(method: str) -> None:
    refused = refusal(method=method)
    assert (refused.status, list(refused.headers)) == (405, [(b"allow", b"GET")])


@pytest.mark.parametrize("version", ["1.0", "2", "0.9"])
def test_another_http_version_is_505(version: str) -> None:
    refused = refusal(version=version)
    assert (refused.status, list(refused.headers)) == (505, [])


@pytest.mark.parametrize(
    "changes",
    [
        {"connection": None},
        {"connection": b"keep-alive"},
        {"connection": b"upgraded"},
        {"upgrade": None},
        {"upgrade": b"h2c"},
        {"upgrade": b"websocket, h2c"},
    ],
    ids=["no-connection", "connection-without-upgrade", "connection-upgraded", "no-upgrade", "h2c", "two-upgrades"],
)
def test_no_upgrade_to_websocket_is_426_naming_it(changes: dict[str, bytes | None]) -> None:
    refused = refusal(headers=opening_headers(**changes))
    assert (refused.status, list(refused.headers)) == (426, UPGRADE)


@pytest.mark.parametrize("version", [None, b"8", b"13, 8", b"thirteen"])
def test_another_websocket_version_is_426_asking_for_13(version: bytes | None) -> None:
    refused = refusal(headers=opening_headers(sec_websocket_version=version))
    assert refused.status == 426
    assert list(refused.headers) == [*UPGRADE, (b"sec-websocket-version", b"13")]


def test_two_version_headers_are_426() -> None:
    refused = refusal(headers=[*opening_headers(), (b"sec-websocket-version", b"13")])
    assert refused.status == 426
    assert (b"sec-websocket-version", b"13") in refused.headers


@pytest.mark.parametrize(
    "key",
    [
        None,
        b"",
        b"not base64!",
        KEY.rstrip(b"="),
        base64.b64encode(b"fifteen bytes.."),
        base64.b64encode(b"seventeen bytes.."),
    ],
    ids=["missing", "empty", "not-base64", "unpadded", "15-bytes", "17-bytes"],
)
def test_a_key_that_is_not_16_bytes_in_base64_is_400(key: bytes | None) -> None:
    refused = refusal(headers=opening_headers(sec_websocket_key=key))
    assert (refused.status, list(refused.headers)) == (400, [])
    assert "Sec-WebSocket-Key" in refused.detail


def test_two_keys_are_400() -> None:
    refused = refusal(headers=[*opening_headers(), (b"sec-websocket-key", KEY)])
    assert refused.status == 400
    assert "exactly one" in refused.detail


def test_checks_come_in_order_method_version_upgrade_version_key() -> None:
    """A request wrong in every way is refused for the first thing a client must fix."""
    wrong = opening_headers(connection=None, sec_websocket_version=b"8", sec_websocket_key=b"x")
    assert refusal("POST", "1.0", wrong).status == 405
    assert refusal("GET", "1.0", wrong).status == 505
    assert refusal("GET", "1.1", wrong).detail.startswith("The Connection header")
    assert refusal("GET", "1.1", opening_headers(sec_websocket_version=b"8", sec_websocket_key=b"x")).detail == (
        "Sec-WebSocket-Version must be 13."
    )
