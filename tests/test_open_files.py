"""A hub raises its open-files limit to the hard limit, and says so when even that cannot hold its readers.

Containers often start with a soft limit of 1024 and a far higher hard one (Docker 25 and later): found by running
the image under scripts/check-image's limits. Real ``ticker run`` processes, started under ``prlimit``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .support.processes import Process, base_env, free_port, ticker, wait_ready


def _open_files(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = re.findall(r"\d+", line)[:2]
            return int(soft), int(hard)
    raise AssertionError("no open-files line in /proc/PID/limits")


def _warnings(log: Path) -> list[str]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line["message"] for line in lines if line.get("logger") == "ticker.serve"]


@pytest.mark.parametrize(
    ("limits", "max_connections", "expected", "warned"),
    [
        ("256:4096", "1000", (4096, 4096), False),  # raised to the hard limit, which holds 1,000 readers
        ("256:4096", "50000", (4096, 4096), True),  # raised, but 4096 cannot hold the default 50,000
        ("256:256", "50000", (256, 256), True),  # nothing to raise: the warning says how many it can hold
    ],
)
def test_hub_raises_its_open_files_limit(
    tmp_path: Path, limits: str, max_connections: str, expected: tuple[int, int], warned: bool
) -> None:
    port = free_port()
    env = base_env(TICKER_MAX_CONNECTIONS=max_connections, TICKER_DATA_DIR=str(tmp_path / "data"))
    hub = Process(["prlimit", f"--nofile={limits}", "--", *ticker("run", "--port", str(port))], env, tmp_path / "log")
    hub.start()
    try:
        wait_ready(f"http://127.0.0.1:{port}", hub)
        assert hub.proc is not None
        assert _open_files(hub.proc.pid) == expected
    finally:
        hub.stop()
    warnings = _warnings(tmp_path / "log")
    if warned:
        assert len(warnings) == 1, warnings
        assert f"open-files limit {expected[0]} is below the {int(max_connections) + 64}" in warnings[0]
        assert f"readers past about {expected[0] - 64}" in warnings[0]
    else:
        assert warnings == []
