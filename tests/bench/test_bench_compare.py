"""``bench/run --compare`` measures the checkouts it names, in one short sitting.

Timings are not asserted; what is checked is that each side ran its own
checkout's code (the report names the package each imports), that every
figure the verdict uses was measured on both sides without errors, and that
the verdict line is printed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import needs_bench_tools

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


@needs_bench_tools
def test_compare_runs_each_checkouts_own_code(tmp_path):
    other = tmp_path / "other"
    archive = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "flask_fal_proxy",
                              "bench", "example_app/gunicorn.conf.py"],
                             capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, archive):
        path = Path(name.decode())
        (other / path).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / path).is_file():
            shutil.copy2(ROOT / path, other / path)
    out = tmp_path / "compare.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "harness.py"), "--compare", str(other),
         "--rounds", "1", "--pairs", "1", "--seconds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Issue 14's bar: " in run.stdout
    results = json.loads(out.read_text())
    assert Path(results["packages"]["old"]).is_relative_to(other.resolve())
    assert Path(results["packages"]["new"]).is_relative_to(ROOT.resolve())
    for side in ("old", "new"):
        sample = results["samples"][0][side]
        assert sample["errors"] == 0
        assert sample["cpu_us_c64"] > 0 and sample["micro_cpu_us"] > 0
        assert sample["added_p50_us"] > 0
    for key in ("cpu_us_c64", "added_p50_us"):
        assert results["summary"][key]["ratio"] > 0
