"""The flash model: what editors may send, and the ninjs documents made from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ticker_service.events import event_key, is_event_id
from ticker_service.flashes import (
    FlashIn,
    FlashPatch,
    corrected_document,
    editor_values,
    flash_id_of,
    is_flash_id,
    new_document,
    withdrawn_document,
)
from ticker_service.settings import Settings

from ..support.schema import assert_ninjs

SETTINGS = Settings(redis_url=None)


def flash(**overrides: object) -> FlashIn:
    values: dict[str, object] = {"headline": "BREAKING: x", "language": "en", "category": "politics"}
    values.update(overrides)
    return FlashIn.model_validate(values)


@pytest.mark.parametrize("headline", ["a\nb", "a\rb", "a\x00b", "a\x1bb", "a\x7fb", " ", "x" * 281])
def test_headline_rejects_control_characters_and_bad_lengths(headline: str) -> None:
    with pytest.raises(ValidationError):
        flash(headline=headline)


@pytest.mark.parametrize("language", ["en", "ar", "es-419", "zh-Hant-TW", "en-GB"])
def test_language_accepts_bcp47_tags(language: str) -> None:
    assert flash(language=language).language == language


@pytest.mark.parametrize("language", ["", "e", "english!", "en_GB", "-en"])
def test_language_rejects_non_tags(language: str) -> None:
    with pytest.raises(ValidationError):
        flash(language=language)


@pytest.mark.parametrize("url", ["ftp://x.example/a", "javascript:alert(1)", "data:text/html,x", "not a url"])
def test_url_must_be_http_or_https(url: str) -> None:
    with pytest.raises(ValidationError):
        flash(url=url)


def test_defaults_and_normalisation() -> None:
    value = flash(category=" Politics ", regions=["MENA", "mena", "Europe"])
    assert value.urgency == 5
    assert value.category == "politics"
    assert value.regions == ["mena", "europe"]


def test_documents_of_every_kind_conform_to_ninjs() -> None:
    first = new_document(
        flash(url="https://news.example/a", source="Desk", regions=["mena"], expires="2030-01-01T12:00:00+02:00"),
        SETTINGS,
    )
    second = corrected_document(first, FlashPatch(headline="BREAKING: y", urgency=2))
    third = withdrawn_document(second)
    for doc in (first, second, third):
        assert_ninjs(doc)
    assert first["expires"] == "2030-01-01T10:00:00Z"
    assert [d["version"] for d in (first, second, third)] == ["1", "2", "3"]
    assert second["uri"] == first["uri"] == third["uri"]
    assert editor_values(second)["headline"] == "BREAKING: y"
    assert editor_values(second)["url"] == "https://news.example/a"
    assert third["pubStatus"] == "canceled"


def test_flash_id_is_the_last_uri_segment_and_url_safe() -> None:
    doc = new_document(flash(), SETTINGS)
    fid = flash_id_of(doc)
    assert doc["uri"].endswith(":" + fid)
    assert is_flash_id(fid)
    assert not is_flash_id("../etc") and not is_flash_id("a b")


def test_event_ids_sort_numerically() -> None:
    ids = ["ab-1700000000000-10", "ab-1700000000000-9", "ab-999-0", "ab-1700000000001-0"]
    assert sorted(ids, key=event_key) == [
        "ab-999-0",
        "ab-1700000000000-9",
        "ab-1700000000000-10",
        "ab-1700000000001-0",
    ]
    assert is_event_id("3f9a01c2-1700000000000-10")
    assert not is_event_id("1700000000000-10") and not is_event_id("x-1-2\nid: 3")
