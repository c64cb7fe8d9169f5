"""Reader filters: every given facet must match; languages use BCP 47 basic filtering."""

from __future__ import annotations

import dataclasses

import pytest

from ticker_service.filters import Filter, FilterError
from ticker_service.flashes import FlashIn, new_document
from ticker_service.settings import Settings


def doc(language: str = "en", category: str = "politics", regions: tuple[str, ...] = (), urgency: int = 5) -> dict:
    flash = FlashIn(headline="x", language=language, category=category, regions=list(regions), urgency=urgency)
    return new_document(flash, Settings(redis_url=None))


@pytest.mark.parametrize(
    ("lang", "tag", "matches"),
    [
        ("en", "en", True),
        ("en", "en-GB", True),
        ("en", "EN-gb", True),
        ("en", "eng", False),
        ("en-gb", "en", False),
        ("ar,es", "es-MX", True),
        ("ar,es", "fr", False),
    ],
)
def test_language_basic_filtering(lang: str, tag: str, matches: bool) -> None:
    assert Filter.parse({"lang": lang}).matches(doc(language=tag)) is matches


def test_every_facet_must_match_and_empty_matches_all() -> None:
    flt = Filter.parse({"category": "sports,economy", "region": "mena", "max_urgency": "3"})
    assert flt.matches(doc(category="economy", regions=("europe", "mena"), urgency=3))
    assert not flt.matches(doc(category="economy", regions=("europe",), urgency=3))
    assert not flt.matches(doc(category="politics", regions=("mena",), urgency=1))
    assert not flt.matches(doc(category="sports", regions=("mena",), urgency=4))
    assert Filter.parse({}).matches(doc(urgency=9))


@pytest.mark.parametrize(
    "params",
    [
        {"max_urgency": "0"},
        {"max_urgency": "x"},
        {"lang": ",".join(f"l{i}" for i in range(40))},
        {"category": "x" * 65},
    ],
)
def test_malformed_filters_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(FilterError):
        Filter.parse(params)


def test_with_access_keeps_every_other_field() -> None:
    """``with_access`` builds the filter field by field: a field added to ``Filter`` must be added there too."""
    flt = Filter(("en",), ("sports",), ("mena",), 3, frozenset({"old"}), frozenset({"old"}))
    private, grants = frozenset({"a", "b"}), frozenset({"a"})
    assert flt.with_access(private, grants) == dataclasses.replace(flt, private=private, grants=grants)
    assert [f.name for f in dataclasses.fields(Filter)] == [
        "languages",
        "categories",
        "regions",
        "max_urgency",
        "private",
        "grants",
    ]
