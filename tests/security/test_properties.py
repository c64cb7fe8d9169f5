"""Property tests (Hypothesis) for what attackers control: SSE framing, the flash model, filters, desks, access."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ticker_service.events import Event
from ticker_service.filters import Filter, FilterError
from ticker_service.flashes import FlashIn, FlashPatch, corrected_document, new_document
from ticker_service.security.tokens import Desk
from ticker_service.settings import Settings

from ..support.readers import parse_sse

SETTINGS = Settings(redis_url=None)
CATEGORIES = list(SETTINGS.categories)
REGIONS = list(SETTINGS.regions)
INJECTION = st.text(alphabet=st.sampled_from(["\r", "\n", "\0", "a", "1", "-", ":", " "]), max_size=30)


@given(INJECTION.filter(lambda s: any(c in s for c in "\r\n\0")), st.sampled_from(["flash", "update", "withdraw"]))
def test_sse_refuses_an_event_id_that_could_inject_fields(event_id: str, kind: str) -> None:
    """An id with CR, LF or NUL never reaches the wire: encoding refuses it."""
    with pytest.raises(ValueError):
        Event(event_id, kind, {}).to_sse()  # type: ignore[arg-type]


@settings(max_examples=200)
@given(
    st.text(min_size=1, max_size=300),
    st.text(max_size=300),
    st.sampled_from(["en", "ar", "es-MX"]),
    st.sampled_from(CATEGORIES),
)
def test_a_published_flash_is_one_sse_event_with_the_headline_intact(
    headline: str, source: str, language: str, category: str
) -> None:
    """Whatever an editor sends: refused (422), or one SSE event whose data carries exactly the plain text."""
    try:
        flash = FlashIn(headline=headline, language=language, category=category, source=source or None)
    except ValidationError:
        return
    text = flash.headline
    assert text == text.strip() and 1 <= len(text) <= 280
    assert not any(unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"} for ch in text)
    doc = new_document(flash, SETTINGS)
    parsed = parse_sse(Event("e1-1-1", "flash", doc).to_sse())
    assert len(parsed) == 1 and set(parsed[0]) == {"id", "event", "data"}
    assert json.loads(parsed[0]["data"])["headlines"][0]["value"] == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
FIELDS = ["headline", "language", "urgency", "category", "regions", "url", "source", "expires", "other"]


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=9))
def test_any_json_body_is_a_flash_or_a_validation_error(body: dict[str, Any]) -> None:
    """No body makes the models raise anything but a validation error (a 422, never a 500)."""
    for model in (FlashIn, FlashPatch):
        try:
            model.model_validate(body)
        except ValidationError:
            pass


@given(st.dictionaries(st.sampled_from(["lang", "category", "region", "max_urgency", "x"]), json_values, max_size=5))
def test_filter_parse_raises_only_filter_errors(params: dict[str, Any]) -> None:
    """Reader query strings and subscribe messages: a filter, or a FilterError (400 / close 1008)."""
    try:
        Filter.parse(params)
    except FilterError:
        pass


docs = st.builds(
    lambda lang, cat, regions, urgency: new_document(
        FlashIn(headline="p", language=lang, category=cat, regions=regions, urgency=urgency), SETTINGS
    ),
    st.sampled_from(["en", "en-GB", "ar", "fr"]),
    st.sampled_from(CATEGORIES),
    st.lists(st.sampled_from(REGIONS), max_size=3, unique=True),
    st.integers(1, 9),
)
topics = st.frozensets(st.sampled_from(CATEGORIES + REGIONS), max_size=4)


@settings(max_examples=300)
@given(docs, topics, topics, st.sampled_from([{}, {"category": "health"}, {"lang": "en"}]))
def test_private_topics_reach_only_readers_granted_all_of_them(
    doc: dict[str, Any], private: frozenset[str], grants: frozenset[str], params: dict[str, str]
) -> None:
    """A flash on a private topic matches a reader only if every private topic it carries is granted, and a
    reader changing its filter keeps exactly its grants."""
    flt = Filter.parse(params)
    limited = Filter(flt.languages, flt.categories, flt.regions, flt.max_urgency, private, grants & private)
    carried = {doc["subjects"][0]["literal"], *(p["literal"] for p in doc.get("places", []))}
    if limited.matches(doc):
        assert carried & private <= grants
        assert flt.matches(doc)
    elif flt.matches(doc):
        assert carried & private - grants
    changed = Filter.parse({"max_urgency": "9"}).keeping_access(limited)
    assert (changed.private, changed.grants) == (limited.private, limited.grants)


@settings(max_examples=300)
@given(
    docs,
    st.lists(st.sampled_from(["en", "ar", "en-gb", "fr"]), max_size=2, unique=True),
    st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True),
    st.sampled_from([None, "politics", "sports"]),
)
def test_desks_agree_with_reader_filters_and_cover_corrections(
    doc: dict[str, Any], languages: list[str], categories: list[str], new_category: str | None
) -> None:
    """A desk allows a flash exactly when a reader filter with the same languages and categories matches it;
    a correction's result is judged the same way."""
    desk = Desk(tuple(languages), tuple(categories))
    same = Filter(languages=tuple(languages), categories=tuple(categories))
    assert (desk.refuses(doc["language"], doc["subjects"][0]["literal"]) is None) == same.matches(doc)
    if new_category is not None:
        corrected = corrected_document(doc, FlashPatch(category=new_category))
        assert (desk.refuses(corrected["language"], new_category) is None) == same.matches(corrected)
