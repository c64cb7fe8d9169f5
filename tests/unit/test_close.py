"""The close-code table: each code in its documented range, the reasons and hints the transports send, and the
JS and Python clients applying the same rule (read from their sources, so that neither can drift)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ticker_client import backoff as python_client

from ticker_service.transports import close
from ticker_service.transports.close import Close, Rule, closing, rule

ROOT = Path(__file__).resolve().parents[2]
JS_BACKOFF = (ROOT / "clients" / "js" / "backoff.js").read_text()


def test_each_code_is_in_the_range_of_its_rule() -> None:
    assert Close.SLOW in close.RECONNECT and Close.SLOW.rule is Rule.RECONNECT
    assert Close.TOKEN_EXPIRED in close.REFRESH and Close.TOKEN_EXPIRED.rule is Rule.REFRESH
    for code in Close:
        if code >= 4000:
            ranges = {Rule.RECONNECT: close.RECONNECT, Rule.REFRESH: close.REFRESH, Rule.TERMINAL: close.TERMINAL}
            assert code in ranges[code.rule], code
        else:
            assert 1000 <= code <= 2999, code
    assert {c for c in Close if c.rule is Rule.TERMINAL} == {1007, 1008, 1009}


def test_the_ranges_tile_the_private_codes() -> None:
    assert (close.RECONNECT.start, close.RECONNECT.stop) == (4000, 4400)
    assert (close.REFRESH.start, close.REFRESH.stop) == (4400, 4500)
    assert (close.TERMINAL.start, close.TERMINAL.stop) == (4500, 5000)
    assert [rule(c) for c in (4000, 4399, 4400, 4499, 4500, 4999)] == [
        Rule.RECONNECT,
        Rule.RECONNECT,
        Rule.REFRESH,
        Rule.REFRESH,
        Rule.TERMINAL,
        Rule.TERMINAL,
    ]
    assert [rule(c) for c in (1000, 1001, 1002, 1006, 1011, 1012, 1013, 3000)] == [Rule.RECONNECT] * 8


@pytest.mark.parametrize("reason", sorted(close.REASONS))
def test_reconnect_reasons_carry_a_retry_hint(reason: str) -> None:
    code, text = closing(reason)
    assert code is close.REASONS[reason][0]
    assert re.fullmatch(r".+; retry=\d{4}", text), text
    assert len(text.encode()) <= 123  # what a close frame can carry


def test_other_reasons_are_policy_violations_without_a_hint() -> None:
    code, text = closing("bad message: only {'type': 'subscribe', ...} messages are accepted")
    assert code == Close.POLICY_VIOLATION and "retry=" not in text
    assert len(closing("bad message: " + "x" * 500)[1]) == 100


def test_the_python_client_applies_the_same_rule() -> None:
    assert python_client.TERMINAL_CODES == close.TERMINAL_RFC
    assert python_client.REFRESH_CODES == close.REFRESH
    assert python_client.TERMINAL_RANGE == close.TERMINAL
    for code in [*range(1000, 1016), *range(2999, 5001)]:
        assert python_client.close_rule(code) == rule(code).value, code


def _js_const(name: str) -> list[int]:
    match = re.search(rf"export const {name} = (?:new Set\()?\[([\d, ]+)\]", JS_BACKOFF)
    assert match is not None, f"{name} is not in backoff.js"
    return [int(n) for n in match.group(1).split(",")]


def test_the_js_client_applies_the_same_rule() -> None:
    assert set(_js_const("TERMINAL_CODES")) == close.TERMINAL_RFC
    assert _js_const("REFRESH_RANGE") == [close.REFRESH.start, close.REFRESH.stop - 1]
    assert _js_const("TERMINAL_RANGE") == [close.TERMINAL.start, close.TERMINAL.stop - 1]
    # closeRule returns the rule names of the server's table (its behaviour is tested in tests/js/backoff.test.js).
    returned = set(re.findall(r'return "(\w+)";', JS_BACKOFF.split("export function closeRule", 1)[1].split("\n}")[0]))
    assert returned == {r.value for r in Rule}
