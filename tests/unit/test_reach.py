"""The sketch arithmetic of ops/reach.py and the receipt's clock rules of api/receipts.py, without a server."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from ticker_service.api.receipts import ReceiptIn, latency
from ticker_service.filters import Filter
from ticker_service.flashes import CANARY_CATEGORY
from ticker_service.ops.reach import MemoryReachStore, Reach, bin_of, summary
from ticker_service.problems import Problem
from ticker_service.security.readers import ReaderAuth
from ticker_service.settings import Settings


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_quantiles_from_bins_are_within_one_percent() -> None:
    """Bins summed from several "hubs" give the quantiles of all their values, each within 1 %."""
    rng = random.Random(7)
    values = [rng.lognormvariate(-1, 1.2) for _ in range(20_000)]  # median ~0.37 s, a long tail
    hubs = [Counter(bin_of(v) for v in values[i::3]) for i in range(3)]
    merged: Counter[int] = Counter()
    for bins in hubs:
        merged.update(bins)
    figures = summary(merged, len(values))
    assert figures["receipts"] == figures["readers"] == len(values)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert figures[name] == pytest.approx(exact(values, q), rel=0.011)


def test_weights_count_readers_not_receipts() -> None:
    figures = summary({bin_of(0.5): 10, bin_of(2.0): 30}, receipts=4)
    assert (figures["receipts"], figures["readers"]) == (4, 40)
    assert figures["p50"] == pytest.approx(2.0, rel=0.01)  # three quarters of the readers saw it at 2 s


def test_empty_figures_have_no_quantiles() -> None:
    assert summary({}, 0) == {"receipts": 0, "readers": 0}


async def test_reach_reads_what_it_added_per_version_and_surface() -> None:
    reach = Reach(MemoryReachStore())
    for seconds in (0.1, 0.2, 0.3):
        reach.add("f1", "1", "ws", seconds)
    reach.add("f1", "2", "apns", 1.5, weight=10)
    reach.add("other", "1", "ws", 9.0)
    figures = await reach.flash("f1")
    assert [(r["version"], r["surface"], r["receipts"], r["readers"]) for r in figures["versions"]] == [
        ("1", "ws", 3, 3),
        ("2", "apns", 1, 10),
    ]
    assert (figures["receipts"], figures["readers"]) == (4, 13)
    hour = await reach.last_hour()
    assert hour["surfaces"]["ws"]["receipts"] == 4 and hour["all"]["readers"] == 14


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PUBLISHED = (NOW - timedelta(seconds=10)).timestamp()


def receipt(shown: datetime, sent: datetime | None = None) -> ReceiptIn:
    return ReceiptIn(flash="f", version="1", surface="ws", shown_at=shown, sent_at=sent)


def test_latency_from_the_clients_clock() -> None:
    assert latency(receipt(NOW - timedelta(seconds=9)), PUBLISHED, NOW.timestamp()) == pytest.approx(1.0)


def test_sent_at_takes_the_clock_offset_out() -> None:
    """A client an hour slow: shown 0.5 s before it sent, so 9.5 s after the publish on the server's clock."""
    slow = NOW - timedelta(hours=1)
    measured = latency(receipt(slow - timedelta(seconds=0.5), slow), PUBLISHED, NOW.timestamp())
    assert measured == pytest.approx(9.5)


@pytest.mark.parametrize(
    ("shown", "sent", "why"),
    [
        (NOW - timedelta(seconds=30), None, "before the version was published"),
        (NOW + timedelta(minutes=5), None, "in the future"),
        (NOW, NOW - timedelta(seconds=1), "after sent_at"),
        (NOW + timedelta(days=3), NOW + timedelta(days=3), "too long after"),
    ],
)
def test_implausible_displays_are_refused(shown: datetime, sent: datetime | None, why: str) -> None:
    published = PUBLISHED if why != "too long after" else PUBLISHED - 3 * 86400 - 60
    now = NOW.timestamp() if why != "too long after" else (NOW + timedelta(days=3)).timestamp()
    with pytest.raises(Problem) as refused:
        latency(receipt(shown, sent), published, now)
    assert refused.value.status == 422 and why in str(refused.value.errors)


def test_clock_noise_before_the_publish_counts_as_immediate() -> None:
    assert latency(receipt(NOW - timedelta(seconds=10.5)), PUBLISHED, NOW.timestamp()) == 0.0


def test_only_the_canarys_secret_grants_its_category() -> None:
    """Not a reader without a token, not a JWT that lists the category: only the canary's secret."""
    secret = "s" * 32
    settings = Settings(private_topics=("health",), jwt_algorithm="HS256", jwt_key=secret, jwt_issuer="iss")
    auth = ReaderAuth(settings)
    auth.canary_key = "the-canary-secret"
    canary = {"subjects": [{"literal": CANARY_CATEGORY}], "urgency": 9}
    claims = {"iss": "iss", "aud": "ticker", "exp": int(time.time()) + 60, "topics": ["health", CANARY_CATEGORY]}
    forged = jwt.encode(claims, secret, algorithm="HS256")
    assert not auth.apply(Filter(), auth.verify(None)).matches(canary)
    assert not auth.apply(Filter(), auth.verify(forged)).matches(canary)
    assert auth.verify(forged).topics == {"health"}
    assert auth.apply(Filter(), auth.verify("the-canary-secret")).matches(canary)
