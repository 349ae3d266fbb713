"""The benchmark harness still measures what it claims, in one short run.

Timings are not asserted (they belong to bench/run on a quiet machine); what
is checked is that the harness can stand up nginx, the holding upstream and
the recommended gunicorn setup, that the proxy really forwarded (the harness
refuses to time one that does not), and the properties that do not depend on
load: every event arrives, upstream connections are reused, a large answer
is streamed, held calls complete and stalled clients do not block a call.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import needs_bench_tools

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.bench


@needs_bench_tools
def test_quick_run_of_the_recommended_setup(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "harness.py"),
            "--quick",
            "--seconds",
            "1",
            "--only",
            "upstream,gevent",
            "--long",
            "gevent",
            "--long-cases",
            "1x64",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "\nTargets\n" in run.stdout and "(recommended)" in run.stdout
    assert "\nHeld calls" in run.stdout
    results = json.loads(out.read_text())
    ours = next(v for k, v in results["subjects"].items() if k.endswith("(recommended)"))
    for c in ("1", "64"):
        assert ours["load"][c]["requests"] > 0
        assert ours["load"][c]["errors"] == 0
    assert ours["sse"]["events"] == ours["sse"]["expected"]
    # gevent: one upstream connection per call in flight at most (wrk keeps 64).
    assert 0 < ours["keepalive"]["connections"] <= 64
    assert ours["memory"]["download_growth_mib"] < 32
    long = next(v for k, v in results["long"]["subjects"].items() if k.endswith("(recommended)"))
    held = long["cases"][0]
    assert held["errors"] == 0 and held["requests"] > 0
    assert held["peak_fds"] > held["idle_fds"]
    assert long["streams"]["events"] == long["streams"]["expected"]
    assert long["stalled"]["failed"] == 0
