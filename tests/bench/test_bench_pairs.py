"""The paired figures: what the usage table and issue 16's target are decided by.

Two runs minutes apart differ by a fifth on a shared machine, so a ratio of
two medians taken at different times can say 1.3x where the proxy costs
1.05x. These tests feed the summary and the report sets of runs in which
the machine drifts, and check that the figure is the median of the ratios
within each set, that the target reads that figure and not the single-run
columns, and that the order of runs rotates so no subject always goes first.
A short real run of the phase checks that it measures both sides.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import needs_bench_tools

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import pairs  # noqa: E402
import report  # noqa: E402
import usage_cost  # noqa: E402

BASE, MEMORY, REDIS = "gevent", "gevent-usage-memory", "gevent-usage-redis"


def drifting_samples() -> list[dict]:
    """Three rounds of one set each; the machine's speed changes between them.

    Tracking costs 1.05x in every set, but the without-tracking proxy's
    median set (200) is not the tracking one's (126), so a ratio of medians
    would say 0.63x.
    """
    speeds = [(100, 300), (400, 420), (200, 126)]
    samples = []
    for n, (base, slow) in enumerate(speeds):
        samples.append({
            "round": n, "upstream_p50_us": 300,
            BASE: {"cpu_us_c64": base, "cpu_us_c1": base, "added_p50_us": base,
                   "micro_cpu_us": 400, "rps_c64": 1000, "errors": 0},
            MEMORY: {"cpu_us_c64": base * 1.05, "cpu_us_c1": base * 1.05,
                     "added_p50_us": base * 1.05, "micro_cpu_us": 440, "rps_c64": 950,
                     "errors": 0},
            REDIS: {"cpu_us_c64": slow, "cpu_us_c1": slow, "added_p50_us": slow,
                    "micro_cpu_us": 500, "rps_c64": 900, "errors": 0,
                    "companion_cpu_us_c1": 40, "companion_cpu_us_c64": 30},
        })
    return samples


def usage_results(samples: list[dict]) -> dict:
    labels = (BASE, MEMORY, REDIS)
    return {
        "baseline": BASE, "names": {label: f"{label} subject" for label in labels},
        "seconds": 2, "rounds": 3, "pairs": 1, "load": "0 / 0", "elapsed_s": 1,
        "samples": samples, "errors": {label: 0 for label in labels},
        "summary": {label: {key: pairs.paired(samples, BASE, label, key)
                            for key in usage_cost.FIGURES} for label in (MEMORY, REDIS)},
    }


def test_the_figure_is_the_median_of_ratios_within_each_set():
    s = pairs.paired(drifting_samples(), BASE, MEMORY, "cpu_us_c64")
    assert s["ratio"] == pytest.approx(1.05)
    assert s["q1"] == pytest.approx(1.05) and s["q3"] == pytest.approx(1.05)
    assert s[BASE] == 200 and s["n"] == 3


def test_micro_is_counted_once_a_round_and_a_companion_has_no_ratio():
    samples = drifting_samples()
    samples.insert(1, {**samples[0]})  # a second set of round 0, the same micro figure
    assert pairs.paired(samples, BASE, MEMORY, "micro_cpu_us")["n"] == 3
    assert pairs.paired(samples, BASE, MEMORY, "cpu_us_c64")["n"] == 4
    redis = pairs.paired(samples, BASE, REDIS, "companion_cpu_us_c64")
    assert redis[REDIS] == 30 and redis["ratio"] is None
    assert pairs.paired(samples, BASE, MEMORY, "companion_cpu_us_c64") is None


def test_order_rotates_so_each_subject_goes_first_as_often():
    labels = [BASE, MEMORY, REDIS]
    firsts = [pairs.rotated(labels, k)[0] for k in range(6)]
    assert sorted(firsts) == sorted(labels * 2)
    # Two labels: A B, then B A, as --compare always alternated.
    assert [pairs.rotated(["old", "new"], k) for k in range(2)] == [["old", "new"],
                                                                    ["new", "old"]]


def test_the_target_reads_the_paired_ratio_not_the_single_runs():
    results = {
        "subjects": {  # one run each, minutes apart: 1.30x
            "without": {"load": {"64": {"cpu_us_per_request": 100}}},
            "with": {"compared_with": "without",
                     "load": {"64": {"cpu_us_per_request": 130}}},
        },
        "usage": usage_results(drifting_samples()),
    }
    targets = report.evaluate_usage(results)
    assert list(targets) == [f"{MEMORY} subject"]
    (row,) = targets[f"{MEMORY} subject"]
    assert row["figure"].startswith("1.050x (median of 3 pairs") and row["met"]


def test_the_usage_table_shows_each_side_with_its_paired_ratio():
    out = io.StringIO()
    report.print_usage_cost(usage_results(drifting_samples()), out)
    lines = out.getvalue().splitlines()
    rows = [line for line in lines if line.startswith(f"| {MEMORY} subject | c=64")]
    assert rows == [f"| {MEMORY} subject | c=64 | 210 | 1.05x [1.05-1.05] | - | - | - |  |"]
    redis = next(line for line in lines if line.startswith(f"| {REDIS} subject | c=1 "))
    assert "| 40 | 0 |" in redis
    assert any(line.startswith(f"| {BASE} subject | micro.py") for line in lines)


@pytest.mark.bench
@needs_bench_tools
def test_a_usage_subject_brings_the_paired_phase_with_the_proxy_without_it(tmp_path):
    usage = ["gevent-usage-memory"] + (["gevent-usage-redis"] if shutil.which("redis-server")
                                       else [])
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "harness.py"), "--quick", "--seconds", "1",
         "--only", ",".join(["upstream", *usage]), "--long", "none", "--rounds", "1",
         "--pairs", "1", "--pair-seconds", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "What usage tracking costs (up at once" in run.stdout
    assert "on memory <= 1.10x without | " in run.stdout
    paired = json.loads(out.read_text())["usage"]
    # The proxy without tracking was not chosen for the main table, but is the baseline here.
    assert set(paired["names"]) == {BASE, *usage}
    sample = paired["samples"][0]
    for label in paired["names"]:
        assert paired["errors"][label] == 0
        assert sample[label]["cpu_us_c64"] > 0 and sample[label]["micro_cpu_us"] > 0
    for label in usage:
        assert paired["summary"][label]["cpu_us_c64"]["ratio"] > 0
        assert paired["summary"][label]["micro_cpu_us"]["ratio"] > 0
    if REDIS in usage:
        assert sample[REDIS]["companion_cpu_us_c64"] > 0
