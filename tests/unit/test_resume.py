"""What a reader's request says about where to resume (``transports/resume.py``)."""

from __future__ import annotations

import pytest

from ticker_service.filters import FilterError
from ticker_service.transports.resume import read_subscription


def test_last_event_id_header_wins_over_the_query_parameter() -> None:
    """A browser's EventSource reconnects to the same URL by itself: its header holds the later position."""
    _, last = read_subscription({"lang": "en", "last_event_id": "ab12-100-0"}, "ab12-250-3")
    assert last == "ab12-250-3"


def test_query_parameter_alone_and_neither() -> None:
    assert read_subscription({"last_event_id": "ab12-100-0"})[1] == "ab12-100-0"
    assert read_subscription({"lang": "en"}, None)[1] is None
    assert read_subscription({"last_event_id": ""}, "")[1] is None


def test_a_malformed_header_is_refused_even_with_a_good_parameter() -> None:
    with pytest.raises(FilterError) as caught:
        read_subscription({"last_event_id": "ab12-100-0"}, "ab12-100-0\r\nevent: x")
    assert caught.value.field == "last_event_id"
