"""Two checkouts of the proxy on the fal route, alternating, in one sitting.

A refactor must not cost what it organises, and figures taken an hour apart
on a shared machine differ by more than the change being judged. So both
checkouts run against the same nginx in the same minutes, in rounds that
alternate their order (A B, then B A, ...) so that a drift of the machine
falls on both; each round starts each proxy afresh, so one lucky process
does not decide it. The figures are medians over the rounds, and the
upstream alone is timed in every round, so *added* p50 subtracts the floor
of the same minute. Comparing a checkout with itself gives the noise floor.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import wrk
from probes import verify
from processes import ROOT, free_port
from subjects import Subject, recommended
from upstream import FAL_KEY, MIB, Upstream


def package_file(checkout: Path) -> str:
    """Where ``flask_fal_proxy`` comes from for a proxy run in ``checkout``, as a check."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", "import flask_fal_proxy; "
                          "print(flask_fal_proxy.__file__)"],
                         cwd=checkout, env=env, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: flask_fal_proxy does not import:\n{out.stderr[-2000:]}")
    found = out.stdout.strip()
    if not Path(found).resolve().is_relative_to(checkout.resolve()):
        raise SystemExit(f"{checkout}: the proxy would import {found}, not this checkout's code")
    return found


def measure(subject: Subject, workdir: Path, seconds: float) -> dict[str, Any]:
    subject.start(workdir)
    try:
        verify(subject)
        wrk.run(subject, 64, 1)  # every worker warm, its pool opened
        c1 = wrk.run(subject, 1, seconds)
        c64 = wrk.run(subject, 64, seconds)
    finally:
        subject.stop()
    return {"p50_us_c1": c1["p50_us"], "cpu_us_c1": c1["cpu_us_per_request"],
            "cpu_us_c64": c64["cpu_us_per_request"], "rps_c64": c64["rps"],
            "errors": c1["errors"] + c64["errors"]}


def run(checkouts: list[Path], rounds: int, seconds: float) -> dict[str, Any]:
    labelled = dict(zip(("old", "new"), checkouts, strict=True))
    found = {label: package_file(path) for label, path in labelled.items()}
    workdir = Path(tempfile.mkdtemp(prefix="fal-proxy-compare-"))
    workdir.chmod(0o755)  # nginx's workers drop root
    upstream = Upstream(workdir, free_port(), free_port())
    alone = Subject("upstream alone (nginx)", upstream.port, "/", f"Key {FAL_KEY}")
    per_round: list[dict[str, Any]] = []
    try:
        upstream.start(MIB)
        for n in range(rounds):
            order = list(labelled.items())
            if n % 2:
                order.reverse()
            floor = wrk.run(alone, 1, seconds)["p50_us"]
            row: dict[str, Any] = {"upstream_p50_us": floor}
            for label, path in order:
                m = measure(recommended(upstream.port, path), workdir, seconds)
                m["added_p50_us"] = m["p50_us_c1"] - floor
                row[label] = m
                print(f"   round {n + 1}/{rounds} {label}: {m['cpu_us_c64']:.0f} us CPU per "
                      f"call at c=64, added p50 {m['added_p50_us'] / 1000:.3f} ms", flush=True)
            per_round.append(row)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"checkouts": {label: str(path) for label, path in labelled.items()},
            "packages": found, "rounds": per_round, "seconds": seconds,
            "medians": {label: medians(per_round, label) for label in labelled}}


FIGURES = (("cpu_us_c64", "CPU us/call, c=64"), ("cpu_us_c1", "CPU us/call, c=1"),
           ("added_p50_us", "added p50 us, c=1"), ("rps_c64", "req/s, c=64"))


def medians(rounds: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {key: statistics.median(r[label][key] for r in rounds) for key, _ in FIGURES}


def print_report(results: dict[str, Any], out: Any = sys.stdout) -> None:
    w = out.write
    old, new = results["medians"]["old"], results["medians"]["new"]
    errors = {label: sum(r[label]["errors"] for r in results["rounds"]) for label in ("old", "new")}
    w(f"\nThe fal route, recommended setup, {len(results['rounds'])} rounds alternating, "
      f"{results['seconds']:.0f} s per wrk run; medians over the rounds\n\n")
    for label in ("old", "new"):
        w(f"{label}: {results['checkouts'][label]} (imports {results['packages'][label]})\n")
    w("\n| figure | old | new | new / old | spread of new / old by round |\n")
    w("|---|---|---|---|---|\n")
    for key, title in FIGURES:
        by_round = [r["new"][key] / r["old"][key] for r in results["rounds"] if r["old"][key]]
        spread = f"{min(by_round):.3f} to {max(by_round):.3f}" if by_round else "-"
        x = new[key] / old[key] if old[key] else float("nan")
        w(f"| {title} | {old[key]:.0f} | {new[key]:.0f} | {x:.3f} | {spread} |\n")
    w(f"\nErrors: old {errors['old']}, new {errors['new']}\n")
    verdict = []
    for key, title in FIGURES[:1] + FIGURES[2:3]:
        x = new[key] / old[key] if old[key] else float("nan")
        verdict.append(f"{title}: {x:.3f}x ({'within' if abs(x - 1) <= 0.05 else 'NOT within'} 5%)")
    w("Issue 14's bar: " + "; ".join(verdict) + "\n\n")


def main(dirs: list[Path], rounds: int, seconds: float, json_out: Path | None) -> int:
    """``bench/run --compare OLD [NEW]``: NEW defaults to this checkout."""
    if len(dirs) not in (1, 2):
        raise SystemExit("--compare takes OLD_DIR and optionally NEW_DIR (default: this checkout)")
    checkouts = [d.resolve() for d in dirs] + ([ROOT] if len(dirs) == 1 else [])
    for path in checkouts:
        if not (path / "bench" / "proxy_app.py").exists():
            raise SystemExit(f"{path} is not a checkout of flask-fal-proxy (no bench/proxy_app.py)")
    results = run(checkouts, rounds, seconds)
    print_report(results)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
    return 0
