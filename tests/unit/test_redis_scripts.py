"""The Lua scripts (the broker's, the push claims' and plan's) and their KEYS/ARGV tables agree (pure: no Redis)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ticker_service.broker.redis_scripts import SCRIPTS as BROKER_SCRIPTS
from ticker_service.broker.redis_scripts import RecordArgs, RecordKeys, positional
from workers.push.plan import SCRIPTS as PLAN_SCRIPTS
from workers.push.pusher import SCRIPTS as PUSH_SCRIPTS

SCRIPTS = {**BROKER_SCRIPTS, **{f"push_{name}": script for name, script in {**PUSH_SCRIPTS, **PLAN_SCRIPTS}.items()}}

NAMED = re.compile(r"(KEYS|ARGV)\[(\d+)\] = (\w+)")


def _used(source: str, table: str) -> set[int]:
    """The indexes of ``table`` (KEYS or ARGV) the script's code reads, its comments left out."""
    code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
    return {int(n) for n in re.findall(rf"{table}\[(\d+)\]", code)}


def _named(source: str, table: str) -> dict[int, str]:
    """What the script's header comments call each index of ``table``."""
    comments = "\n".join(line for line in source.splitlines() if line.lstrip().startswith("--"))
    return {int(n): name for kind, n, name in NAMED.findall(comments) if kind == table}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_index_the_script_reads_is_named_in_order(name: str) -> None:
    """Each KEYS[n]/ARGV[n] the Lua code uses is field n of its table, and the header comment gives that name."""
    source, keys, args = SCRIPTS[name]
    for table, fields in (("KEYS", keys._fields), ("ARGV", args._fields)):
        expected = {i + 1: field for i, field in enumerate(fields)}
        assert _named(source, table) == expected, f"{name}: the {table} comment differs from the table"
        assert _used(source, table) <= set(expected), f"{name}: {table} index without a name"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_named_argument_is_used(name: str) -> None:
    """No table has a field the script never reads (a leftover would still be sent, and be counted wrong)."""
    source, keys, args = SCRIPTS[name]
    assert _used(source, "KEYS") == set(range(1, len(keys._fields) + 1))
    assert _used(source, "ARGV") == set(range(1, len(args._fields) + 1))


def test_record_tables_give_the_positions_the_script_reads() -> None:
    """The record script's 15 keys and 24 arguments come out in order, so ARGV[14] is the listed flag."""
    values: dict[str, Any] = {field: f"<{field}>" for field in RecordArgs._fields}
    args = positional(RecordArgs(**values))
    keys = positional(RecordKeys(**{field: f"<{field}>" for field in RecordKeys._fields}))
    assert len(keys) == 15
    assert len(args) == 24
    assert args[14 - 1] == "<listed>"
    assert args[11 - 1] == "<job_ttl_ms>"
    assert args[20 - 1] == "<held_claim>"
    assert keys[5 - 1] == "<idempotency>"
    assert keys[13 - 1] == "<fanout_queued>"
    assert args[22 - 1] == "<in_progress_prefix>"
