"""Smoke test of the fan-out benchmark (``python -m bench fanout``), against ticker alone: no nginx or Node needed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from .support.processes import ROOT, base_env


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_fanout_benchmark_accounts_for_every_delivery(transport: str, tmp_path: Path) -> None:
    """200 readers, 20 messages paced and 20 in a burst: all delivered once, with sane CPU and memory figures."""
    out = tmp_path / "fanout.json"
    args = [
        "--targets",
        "ticker",
        "--transport",
        transport,
        "--readers",
        "200",
        "--messages",
        "20",
        "--rounds",
        "1",
        "--rate",
        "20",
        "--json",
        str(out),
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bench", "fanout", *args],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ticker" in done.stdout and "paced" in done.stdout and "burst" in done.stdout

    ticker = json.loads(out.read_text())["medians"]["ticker"]
    assert ticker["connect"]["opened"] == 200 and ticker["connect"]["failed"] == 0
    assert ticker["connect"]["kb_per_conn"] > 0
    assert ticker["connect"]["per_s"] > 0
    for phase in ("paced", "burst"):
        figures = ticker[phase]
        assert figures["received"] == 200 * 20 and figures["lost"] == 0 and figures["duplicates"] == 0, figures
        assert figures["cpu_per_m"] > 0 and figures["cpu_per_m_hub"] > 0
        assert figures["cpu_per_m"] >= figures["cpu_per_m_hub"]  # the whole path includes the hub
        assert 0 < figures["e2e_p50_ms"] <= figures["e2e_p99_ms"] <= figures["fanout_p99_ms"] < 10_000
        assert figures["deliveries_per_s"] > 0
        # The hub's receipt of each flash was seen (a subscriber of its channel): the first reader is timed from it.
        assert math.isfinite(figures["first_p50_ms"]) and figures["first_p50_ms"] <= figures["first_p99_ms"]
        assert figures["first_p99_ms"] < figures["fanout_due_p99_ms"]
        assert figures["fanout_p99_ms"] <= figures["fanout_due_p99_ms"]  # due no later than sent
        assert 0 < figures["post_p50_ms"] <= figures["post_p99_ms"]
