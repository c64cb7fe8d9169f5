"""IPTC's official ninjs 3.1 JSON Schema, read where it is kept, never copied in: the file (or the folder holding it)
named by ``TICKER_NINJS_SCHEMA``, else ``../shared/ninjs/`` beside the project root (or beside a folder above it,
for a worktree or a clone that sits deeper)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from .processes import ROOT

SCHEMA_FILE = "ninjs-schema_3.1.json"


def ninjs_schema_path() -> Path:
    configured = os.environ.get("TICKER_NINJS_SCHEMA")
    if configured:
        path = Path(configured)
        return path / SCHEMA_FILE if path.is_dir() else path
    beside = [folder / "shared" / "ninjs" / SCHEMA_FILE for folder in ROOT.parents]
    return next((path for path in beside if path.is_file()), beside[0])


@functools.cache
def ninjs_validator() -> Draft202012Validator:
    path = ninjs_schema_path()
    if not path.is_file():
        pytest.fail(
            f"IPTC's ninjs 3.1 schema is not at {path}: put {SCHEMA_FILE} (https://iptc.org/std/ninjs/) in "
            "../shared/ninjs/ beside the project, or set TICKER_NINJS_SCHEMA to the file or its folder",
            pytrace=False,
        )
    return Draft202012Validator(json.loads(path.read_text()), format_checker=FormatChecker())


def assert_ninjs(doc: dict[str, Any]) -> None:
    errors = sorted(ninjs_validator().iter_errors(doc), key=str)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
