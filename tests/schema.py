"""IPTC's official ninjs 3.1 JSON Schema, read from ../shared/ninjs beside the project (never copied in)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from .support import NINJS_SCHEMA


def ninjs_validator() -> Draft202012Validator:
    if not NINJS_SCHEMA.exists():
        pytest.skip(f"IPTC's ninjs 3.1 schema is not at {NINJS_SCHEMA} (it lives in shared/, beside the project)")
    schema = json.loads(NINJS_SCHEMA.read_text())
    return Draft202012Validator(schema, format_checker=FormatChecker())


def assert_ninjs(doc: dict[str, Any]) -> None:
    errors = sorted(ninjs_validator().iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
