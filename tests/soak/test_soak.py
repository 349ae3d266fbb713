"""The short soak CI runs: bench/soak.py for 20 s, the same checks as the 5-minute run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DURATION = int(os.environ.get("SOAK_SECONDS", "20"))


@pytest.mark.soak
def test_short_soak_keeps_statuses_memory_and_descriptors_level(tmp_path):
    if shutil.which("wrk") is None:
        if os.environ.get("CI"):
            pytest.fail("wrk is missing: scripts/bootstrap.sh installs it in CI")
        pytest.skip("wrk is not installed")
    out = ROOT / "artifacts" / "soak-short.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--duration",
            str(DURATION),
            "--connections",
            "64",
            "--sample-every",
            "0.5",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DURATION + 90,
    )
    assert out.exists(), proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["failures"] == [], result
    assert proc.returncode == 0
    assert result["requests"] > 1000
    assert set(result["statuses"]) <= {"200", "400", "401", "403", "405", "412", "415"}
    assert result["wrk_errors"]["timeout"] == 0
