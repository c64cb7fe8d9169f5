"""IPTC's official ninjs 3.1 JSON Schema, read from ../shared/ninjs beside the project (never copied in)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from .processes import ROOT


def _ninjs_schema() -> Path:
    """IPTC's schema in ``shared/`` beside the project, or beside any folder above it (a worktree or CI clone may sit
    deeper), or where ``TICKER_NINJS_SCHEMA`` says."""
    relative = Path("shared") / "ninjs" / "ninjs-schema_3.1.json"
    candidates = [Path(os.environ["TICKER_NINJS_SCHEMA"])] if os.environ.get("TICKER_NINJS_SCHEMA") else []
    candidates += [folder / relative for folder in ROOT.parents]
    candidates.append(Path("/work") / relative)
    return next((path for path in candidates if path.exists()), ROOT.parent / relative)


NINJS_SCHEMA = _ninjs_schema()


def ninjs_validator() -> Draft202012Validator:
    if not NINJS_SCHEMA.exists():
        pytest.skip(f"IPTC's ninjs 3.1 schema is not at {NINJS_SCHEMA} (it lives in shared/, beside the project)")
    schema = json.loads(NINJS_SCHEMA.read_text())
    return Draft202012Validator(schema, format_checker=FormatChecker())


def assert_ninjs(doc: dict[str, Any]) -> None:
    errors = sorted(ninjs_validator().iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
