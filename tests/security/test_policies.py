"""The pure parts: the Origin policy and the connection guard's counting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ticker_service.security.guard import ConnectionGuard
from ticker_service.security.origins import OriginPolicy
from ticker_service.settings import Settings


@pytest.mark.parametrize(
    ("allowed", "public_url", "origin", "host", "ok"),
    [
        ((), None, None, "ticker.example", True),  # not a browser
        ((), None, "https://ticker.example", "ticker.example", True),
        ((), None, "http://ticker.example:8000", "ticker.example:8000", True),
        ((), None, "https://TICKER.example", "ticker.example", True),
        ((), None, "https://ticker.example", "ticker.example:8443", False),
        ((), None, "https://evil.example", "ticker.example", False),
        ((), None, "null", "ticker.example", False),
        ((), None, "https://ticker.example", None, False),
        ((), "https://news.example/", "https://news.example", "hub1:8000", True),
        ((), "https://news.example/", "http://hub1:8000", "hub1:8000", False),
        (("https://a.example", "https://b.example:444"), None, "https://b.example:444", "x", True),
        (("https://a.example",), None, "https://a.example.evil.example", "x", False),
        (("https://a.example",), None, "https://x", "x", False),  # a list replaces the own-origin default
    ],
)
def test_origin_policy(
    allowed: tuple[str, ...], public_url: str | None, origin: str | None, host: str | None, ok: bool
) -> None:
    assert OriginPolicy(allowed, public_url).allows(origin, host) is ok


def test_cors_headers_only_for_listed_origins_and_never_a_wildcard() -> None:
    policy = OriginPolicy(("https://a.example",), None)
    headers = dict(policy.cors_headers("https://a.example"))
    assert headers[b"access-control-allow-origin"] == b"https://a.example"
    assert headers[b"access-control-allow-credentials"] == b"true"
    assert policy.cors_headers("https://b.example") == [] and policy.cors_headers(None) == []
    assert OriginPolicy((), None).cors_headers("https://a.example") == []


def test_guard_counts_per_address_and_in_all_and_gives_places_back() -> None:
    guard = ConnectionGuard(max_total=3, max_per_ip=2, per_second=1000)
    assert guard.admit("10.0.0.1") is None and guard.admit("10.0.0.1") is None
    refused = guard.admit("10.0.0.1")
    assert refused is not None and refused[0] == 429
    assert guard.admit("10.0.0.2") is None
    refused = guard.admit("10.0.0.3")
    assert refused is not None and refused[0] == 503
    guard.release("10.0.0.1")
    assert guard.admit("10.0.0.3") is None
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        guard.release(ip)
    assert guard.total == 0 and guard.per_ip == {}


def test_guard_new_connections_per_second_burst() -> None:
    guard = ConnectionGuard(max_total=10_000, max_per_ip=10_000, per_second=50)
    results = [guard.admit("10.0.0.1") for _ in range(200)]
    assert 50 <= results.count(None) < 200  # a burst of one second's worth, then refusals (503)
    assert {r[0] for r in results if r is not None} == {503}


def test_guard_takes_a_burst_then_paces() -> None:
    """A rush of 1,000 at once against a burst of 500 and 50 a second: about 500 get in, the rest are refused."""
    guard = ConnectionGuard(max_total=10_000, max_per_ip=10_000, per_second=50, burst=500)
    results = [guard.admit("10.0.0.1") for _ in range(1_000)]
    assert 500 <= results.count(None) < 560
    assert {r[0] for r in results if r is not None} == {503}


@pytest.mark.parametrize("value", ["*", "https://*.example", "https://a.example/path", "a.example", "null"])
def test_allowed_origins_must_be_exact(value: str, tmp_path: Path) -> None:
    """No wildcard (CORS with credentials would then trust every site), no paths, no bare hosts."""
    with pytest.raises(ValidationError, match="exact origins"):
        Settings(data_dir=tmp_path, allowed_origins=value)
    listed = "https://a.example, http://b.example:8080/, http://[::1]:8000"
    assert Settings(data_dir=tmp_path, allowed_origins=listed).allowed_origins == (
        "https://a.example",
        "http://b.example:8080",
        "http://[::1]:8000",
    )
