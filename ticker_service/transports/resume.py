"""What both transports read from a reader's request: the filter and the resume point."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from urllib.parse import parse_qsl

from ..events import is_event_id
from ..filters import Filter, FilterError


def read_subscription(query: Mapping[str, str], last_event_header: str | None = None) -> tuple[Filter, str | None]:
    """Parse ``lang``/``category``/``region``/``max_urgency`` and the resume point.

    The SSE ``Last-Event-ID`` header wins over the ``last_event_id`` parameter: a browser's EventSource reconnects
    to the same URL by itself, and its header then holds a later position than the parameter the page first gave.
    """
    return _checked(Filter.parse(query), last_event_header or query.get("last_event_id") or None)


def _checked(flt: Filter, last: str | None) -> tuple[Filter, str | None]:
    if last is not None and not is_event_id(last):
        raise FilterError("last_event_id", "last_event_id must be an event id as sent in 'event_id' / 'id:'")
    return flt, last


@functools.lru_cache(maxsize=1024)
def _query(query: str) -> tuple[Filter, str | None]:
    """The filter of a raw query string and its ``last_event_id`` as given, remembered: in a reconnect storm
    thousands of readers ask with the same few queries (and a filter is immutable, so they can share one)."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    return Filter.parse(params), params.get("last_event_id") or None


def subscription_of_query(query: str, last_event_header: str | None = None) -> tuple[Filter, str | None]:
    """:func:`read_subscription` of a raw query string (the native protocols read the request themselves)."""
    flt, last = _query(query)
    return _checked(flt, last_event_header or last)
