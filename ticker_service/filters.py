"""What a reader asks for: languages, categories, regions and a maximum urgency.

A flash matches when every facet the reader gave matches; an empty facet matches everything. Languages use
BCP 47 basic filtering (RFC 4647 §3.3.1): the range ``en`` matches ``en`` and ``en-GB``, not ``eng``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .flashes import Document

MAX_VALUES = 32


class FilterError(ValueError):
    """A reader's filter is malformed; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _split(value: Any, field: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    out = tuple(dict.fromkeys(str(item).strip().lower() for item in items if str(item).strip()))
    if len(out) > MAX_VALUES:
        raise FilterError(field, f"{field} takes at most {MAX_VALUES} values")
    if any(len(item) > 64 for item in out):
        raise FilterError(field, f"{field} values are at most 64 characters")
    return out


@dataclass(frozen=True, slots=True)
class Filter:
    languages: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    max_urgency: int = 9
    # Private topics (categories or regions) and the ones this reader's token grants: see security/readers.py.
    private: frozenset[str] = frozenset()
    grants: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Filter:
        """Build a filter from query parameters or a ``subscribe`` message (``lang``/``category``/...)."""
        urgency = params.get("max_urgency")
        if urgency is None or urgency == "":
            max_urgency = 9
        else:
            try:
                max_urgency = int(urgency)
            except (TypeError, ValueError):
                raise FilterError("max_urgency", "max_urgency must be an integer from 1 to 9") from None
            if not 1 <= max_urgency <= 9:
                raise FilterError("max_urgency", "max_urgency must be an integer from 1 to 9")
        return cls(
            languages=_split(params.get("lang"), "lang"),
            categories=_split(params.get("category"), "category"),
            regions=_split(params.get("region"), "region"),
            max_urgency=max_urgency,
        )

    def matches(self, doc: Document) -> bool:
        if doc.get("urgency", 9) > self.max_urgency:
            return False
        if self.private and not self.may_see(doc):
            return False
        if self.languages:
            tag = str(doc.get("language", "")).lower()
            if not any(tag == r or tag.startswith(r + "-") for r in self.languages):
                return False
        if self.categories:
            cats = {s.get("literal") for s in doc.get("subjects", ())}
            if cats.isdisjoint(self.categories):
                return False
        if self.regions:
            regions = {p.get("literal") for p in doc.get("places", ())}
            if regions.isdisjoint(self.regions):
                return False
        return True

    def keeping_access(self, old: Filter) -> Filter:
        """This filter with ``old``'s private topics and grants (a reader changing its filter keeps its token)."""
        return self.with_access(old.private, old.grants)

    def with_access(self, private: frozenset[str], grants: frozenset[str]) -> Filter:
        """This filter with these private topics and grants: once per handshake, so the constructor, not
        ``dataclasses.replace`` (which looks the fields up each time and costs twice as much)."""
        return Filter(self.languages, self.categories, self.regions, self.max_urgency, private, grants)

    def may_see(self, doc: Document) -> bool:
        """Every private topic of ``doc`` (its category and regions) is granted."""
        topics = {s.get("literal") for s in doc.get("subjects", ())} | {p.get("literal") for p in doc.get("places", ())}
        return not (topics & self.private) - self.grants

    def to_params(self) -> dict[str, str]:
        params = {"max_urgency": str(self.max_urgency)}
        for key, values in (("lang", self.languages), ("category", self.categories), ("region", self.regions)):
            if values:
                params[key] = ",".join(values)
        return params
