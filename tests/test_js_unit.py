"""The browser client's pure logic (backoff, resume, the bar's state, the connection state machine) under Node's
own test runner, run from pytest so that ``./scripts/test`` runs it too."""

from __future__ import annotations

import re
import shutil
import subprocess

from .support.processes import ROOT


def test_node_unit_tests_pass() -> None:
    node = shutil.which("node")
    assert node is not None, "node is missing: scripts/setup --test installs nodejs"
    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", *sorted(str(p) for p in (ROOT / "tests" / "js").glob("*.test.js"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", result.stdout, re.MULTILINE)
    assert passed is not None and failed is not None, result.stdout[-2000:]
    assert int(failed.group(1)) == 0
    assert int(passed.group(1)) >= 30, "the client's unit tests did not all run"
