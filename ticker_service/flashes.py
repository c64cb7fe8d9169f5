"""Flashes: the editors' input models, their ninjs 3.1 documents and the taxonomy.

An editor's JSON body is validated by :class:`FlashIn` (or :class:`FlashPatch` for a correction) and turned
into a ninjs document by :func:`new_document` / :func:`corrected_document`. The document is what is stored,
returned by the API and pushed to readers; nothing else about a flash exists.
"""

from __future__ import annotations

import re
import secrets
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from .settings import Settings

Document = dict[str, Any]

# A small, permissive BCP 47 shape check: language subtag, then up to 8-character subtags.
BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_FLASH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
STORY_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # a story id: the language versions of one story share it

# IPTC Media Topics for the default taxonomy; a configured category outside it gets a literal only.
MEDIA_TOPICS = {
    "politics": ("Politics", "11000000"),
    "economy": ("Economy, business and finance", "04000000"),
    "sports": ("Sport", "15000000"),
    "arts-culture": ("Arts, culture, entertainment and media", "01000000"),
    "health": ("Health", "07000000"),
    "technology": ("Science and technology", "13000000"),
    "environment": ("Environment", "06000000"),
    "miscellaneous": ("Human interest", "08000000"),
}
REGION_NAMES = {
    "africa": "Africa",
    "asia": "Asia",
    "asia-pacific": "Asia-Pacific",
    "europe": "Europe",
    "latin-america": "Latin America",
    "mena": "Middle East and North Africa",
    "palestine": "Palestine",
    "us-canada": "US and Canada",
}
CORRECTION_GENRE = {"name": "Correction", "literal": "correction"}
# The time-to-screen canary's flashes (ops/canary.py): ids no editor's flash can have (those are hex), on a category
# that is always private (security/readers.py), never pushed to devices (workers/fanout.py) nor counted in reach.
CANARY_ID_PREFIX = "canary-"
CANARY_CATEGORY = "ticker-canary"


def is_canary(flash_id: str) -> bool:
    return flash_id.startswith(CANARY_ID_PREFIX)


EMBARGO_MAX = timedelta(days=7)  # an embargo further ahead is a typo more often than a plan
HOLD_NOTE = "On hold: being checked; do not use until released."
APPROVAL_NOTE = "Waiting for a second editor's approval: not published."


def _plain_text(value: str, field: str, max_length: int) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{field} must not be empty")
    if len(value) > max_length:
        raise ValueError(f"{field} must be at most {max_length} characters, got {len(value)}")
    # Cc (controls, including CR/LF/NUL) and Cs/Co/Cn make no sense in a one-line headline.
    bad = next((ch for ch in value if unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"}), None)
    if bad is not None:
        raise ValueError(f"{field} must not contain control characters (found U+{ord(bad):04X})")
    return value


class _FlashFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("headline", check_fields=False)
    @classmethod
    def _headline(cls, value: str | None) -> str | None:
        return None if value is None else _plain_text(value, "headline", 280)

    @field_validator("source", check_fields=False)
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        return None if value is None else _plain_text(value, "source", 200)

    @field_validator("language", check_fields=False)
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not BCP47.match(value):
            raise ValueError("language must be a BCP 47 tag such as 'en', 'ar' or 'es-MX'")
        return value

    @field_validator("url", check_fields=False)
    @classmethod
    def _url(cls, value: AnyUrl | None) -> AnyUrl | None:
        if value is not None and value.scheme not in ("http", "https"):
            raise ValueError("url must be an http or https link")
        return value

    @field_validator("category", check_fields=False)
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return None if value is None else value.strip().lower()

    @field_validator("embargo", check_fields=False)
    @classmethod
    def _embargo(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("embargo must be an RFC 3339 instant with a time zone, e.g. 2026-05-04T09:00:00Z")
        now = datetime.now(UTC)
        if value <= now:
            raise ValueError("embargo must be in the future")
        if value > now + EMBARGO_MAX:
            raise ValueError(f"embargo must be at most {EMBARGO_MAX.days} days ahead")
        return value

    @field_validator("regions", check_fields=False)
    @classmethod
    def _regions(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out: list[str] = []
        for region in value:
            region = region.strip().lower()
            if region not in out:
                out.append(region)
        return out


# What the validators above enforce, said in the JSON Schema too (the OpenAPI document is built from these models).
# The length caps in Field() only stop huge values before the validators run.
HEADLINE_SCHEMA: JsonDict = {
    "minLength": 1,
    "maxLength": 280,
    "description": "One line of plain text, no control characters.",
}
SOURCE_SCHEMA: JsonDict = {"minLength": 1, "maxLength": 200, "description": "Plain text, no control characters."}
LANGUAGE_SCHEMA: JsonDict = {"pattern": BCP47.pattern, "description": "A BCP 47 language tag."}
EMBARGO_SCHEMA: JsonDict = {
    "format": "date-time",
    "description": "RFC 3339 instant, in the future and at most 7 days ahead: the flash is stored at once "
    "(pubStatus withheld) and goes out to readers and devices at that instant.",
}


class FlashIn(_FlashFields):
    """The body of ``POST /v1/flashes``."""

    headline: str = Field(max_length=4096, json_schema_extra=HEADLINE_SCHEMA)
    language: str = Field(max_length=35, json_schema_extra=LANGUAGE_SCHEMA)
    urgency: int = Field(default=5, ge=1, le=9)
    category: str = Field(max_length=64)
    regions: list[str] = Field(default_factory=list, max_length=16)
    url: AnyUrl | None = Field(default=None)
    source: str | None = Field(default=None, max_length=4096, json_schema_extra=SOURCE_SCHEMA)
    expires: datetime | None = None
    story: str | None = Field(
        default=None,
        pattern=STORY_PATTERN,
        description="The story this flash is one language version of (ninjs `events[0].id`); set at publication.",
    )
    embargo: datetime | None = Field(default=None, json_schema_extra=EMBARGO_SCHEMA)


def _absent() -> Any:
    """A left-out field of a correction (never validated, never dumped: corrections dump ``exclude_unset``)."""
    return None


class FlashPatch(_FlashFields):
    """The body of ``PATCH /v1/flashes/{id}``, a JSON merge patch (RFC 7396): the fields that change.

    ``null`` removes a field, the same rule for every field: the optional ones (``regions``, ``url``, ``source``,
    ``expires``) go, and the ones every flash has (``headline``, ``language``, ``urgency``, ``category``) cannot
    go, so for them ``null`` is refused with a 422 naming the field (their schema is not nullable). Left out, a
    field keeps its value (``_absent``: not required, but ``null`` is not a value of the field's type).
    """

    headline: str = Field(default_factory=_absent, max_length=4096, json_schema_extra=HEADLINE_SCHEMA)
    language: str = Field(default_factory=_absent, max_length=35, json_schema_extra=LANGUAGE_SCHEMA)
    urgency: int = Field(default_factory=_absent, ge=1, le=9)
    category: str = Field(default_factory=_absent, max_length=64)
    regions: list[str] | None = Field(default=None, max_length=16)
    url: AnyUrl | None = None
    source: str | None = Field(default=None, max_length=4096, json_schema_extra=SOURCE_SCHEMA)
    expires: datetime | None = None
    embargo: datetime = Field(default_factory=_absent, json_schema_extra=EMBARGO_SCHEMA)


def check_taxonomy(values: dict[str, Any], settings: Settings) -> list[tuple[str, str]]:
    """Return ``(field, message)`` for a category or regions outside the configured lists."""
    errors: list[tuple[str, str]] = []
    category = values.get("category")
    if isinstance(category, str) and category.strip().lower() not in settings.categories:
        errors.append(("category", f"unknown category {category!r}; one of: {', '.join(settings.categories)}"))
    regions = values.get("regions")
    for region in regions if isinstance(regions, list) else []:
        if not isinstance(region, str) or region.strip().lower() not in settings.regions:
            errors.append(("regions", f"unknown region {region!r}; any of: {', '.join(settings.regions)}"))
    return errors


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(value: datetime, timespec: str = "seconds") -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def new_flash_id() -> str:
    """A time-ordered, URL-safe id: 11 hex digits of milliseconds, then 8 random characters."""
    return f"{int(time.time() * 1000):011x}{secrets.token_hex(4)}"


def is_flash_id(value: str) -> bool:
    return bool(_FLASH_ID.match(value))


def flash_id_of(doc: Document) -> str:
    uri: str = doc["uri"]
    return re.split(r"[/:]", uri)[-1]


def _facets(values: dict[str, Any], doc: Document) -> None:
    """Write the editor-facing fields into a ninjs document."""
    doc["language"] = values["language"]
    doc["urgency"] = values["urgency"]
    doc["headlines"] = [{"role": "main", "contentType": "text/plain", "value": values["headline"]}]
    category = values["category"]
    name, code = MEDIA_TOPICS.get(category, (category.replace("-", " ").title(), None))
    subject: dict[str, Any] = {"name": name, "rel": "category", "literal": category}
    if code:
        subject["uri"] = f"http://cv.iptc.org/newscodes/mediatopic/{code}"
    doc["subjects"] = [subject]
    doc["places"] = [
        {"name": REGION_NAMES.get(r, r.replace("-", " ").title()), "rel": "region", "literal": r}
        for r in values["regions"] or ()  # a correction's null removes them all
    ]
    for key in ("associations", "infoSources", "expires", "events"):
        doc.pop(key, None)
    if values.get("url"):
        doc["associations"] = [{"name": "story", "rel": "story", "uri": str(values["url"])}]
    if values.get("source"):
        doc["infoSources"] = [{"name": values["source"], "role": "source"}]
    expires = values.get("expires")
    if expires:
        doc["expires"] = _iso(expires) if isinstance(expires, datetime) else expires
    if values.get("story"):
        doc["events"] = [{"id": values["story"]}]


def new_document(flash: FlashIn, settings: Settings) -> Document:
    """The first version of a flash, as a ninjs 3.1 document."""
    stamp = now_iso()
    doc: Document = {
        "uri": settings.uri_prefix + new_flash_id(),
        "type": "text",
        "profile": "ticker-flash",
        "version": "1",
        "firstCreated": stamp,
        "versionCreated": stamp,
        "pubStatus": "usable",
    }
    _facets(flash.model_dump(), doc)
    if flash.embargo is not None:
        doc["pubStatus"] = "withheld"
        doc["embargoedUntil"] = _iso(flash.embargo, "milliseconds")  # the instant as given, to the millisecond
    return doc


def pending_document(doc: Document) -> Document:
    """``doc`` waiting for a second editor: not published until approved."""
    return {**doc, "pubStatus": "withheld", "edNote": APPROVAL_NOTE}


def embargo_ms(doc: Document) -> int:
    """When an embargoed flash goes out (unix milliseconds), or 0 without an embargo."""
    until = doc.get("embargoedUntil")
    return int(datetime.fromisoformat(until).timestamp() * 1000) if until else 0


def editor_values(doc: Document) -> dict[str, Any]:
    """The editor-facing fields of a stored document (the inverse of ``_facets``)."""
    associations = doc.get("associations") or []
    sources = doc.get("infoSources") or []
    events = doc.get("events") or []
    return {
        "headline": doc["headlines"][0]["value"],
        "language": doc["language"],
        "urgency": doc["urgency"],
        "category": doc["subjects"][0]["literal"],
        "regions": [p["literal"] for p in doc.get("places", [])],
        "url": associations[0]["uri"] if associations else None,
        "source": sources[0]["name"] if sources else None,
        "expires": doc.get("expires"),
        "story": events[0].get("id") if events else None,
    }


def _next_version(doc: Document, **changes: Any) -> Document:
    """A copy of ``doc`` numbered one higher and dated now, with ``changes``: what every new version starts from."""
    return {**doc, "version": str(int(doc["version"]) + 1), "versionCreated": now_iso(), **changes}


def _patched(doc: Document, patch: FlashPatch) -> Document:
    """The next version of ``doc`` with the editor's patch applied to its fields."""
    values = editor_values(doc)
    values.update(patch.model_dump(exclude_unset=True))
    new = _next_version(doc)
    _facets(values, new)
    return new


def corrected_document(doc: Document, patch: FlashPatch) -> Document:
    """The next version of ``doc`` with the patch applied, marked as a correction."""
    new = _patched(doc, patch)
    new["genres"] = [CORRECTION_GENRE]
    new["edNote"] = f"Corrected: version {new['version']} replaces version {doc['version']}."
    return new


def revised_document(doc: Document, patch: FlashPatch) -> Document:
    """The next version of a flash no reader has seen yet (scheduled or pending): changed, not a correction."""
    new = _patched(doc, patch)
    if "embargo" in patch.model_fields_set:
        new["embargoedUntil"] = _iso(patch.embargo, "milliseconds")
    return new


def released_document(doc: Document) -> Document:
    """The version that goes out: a scheduled, approved or held flash made usable, dated now."""
    new = _next_version(doc, pubStatus="usable")
    if new.get("edNote") in (HOLD_NOTE, APPROVAL_NOTE):
        del new["edNote"]
    return new


def held_document(doc: Document) -> Document:
    return _next_version(doc, pubStatus="withheld", edNote=HOLD_NOTE)


def canceled_document(doc: Document, note: str) -> Document:
    """A flash that never went out, as the editor who cancels or rejects it sees it last."""
    return _next_version(doc, pubStatus="canceled", edNote=note)


def withdrawn_document(doc: Document) -> Document:
    return _next_version(doc, pubStatus="canceled", edNote="Withdrawn: do not use.")
