"""Two checkouts of the proxy on the fal route, alternating, in one sitting.

A refactor must not cost what it organises. Both checkouts' recommended
setups go to ``pairs`` as labels "old" and "new": up at once against the
same nginx, short wrk runs alternating (A B, then B A, ...), each round
starting both afresh and running each checkout's own ``bench/micro.py``.
The figure compared is the median of the pairs' ratios. Comparing a
checkout with itself shows the noise floor.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pairs import Side, checkout_env, errors, micro, paired, run_rounds
from processes import ROOT, free_port
from subjects import recommended
from upstream import MIB, Upstream

LABELS = ("old", "new")
FIGURES = (
    ("cpu_us_c64", "CPU us/call, c=64 (gunicorn)"),
    ("cpu_us_c1", "CPU us/call, c=1 (gunicorn)"),
    ("added_p50_us", "added p50 us, c=1"),
    ("micro_cpu_us", "CPU us/call in the WSGI app (micro.py)"),
    ("rps_c64", "req/s, c=64"),
)
BAR = ("cpu_us_c64", "added_p50_us")  # issue 14: within 5% of before


def package_file(checkout: Path) -> str:
    """Where ``flask_fal_proxy`` comes from for code run in ``checkout``, checked."""
    out = subprocess.run([sys.executable, "-c", "import flask_fal_proxy; "
                          "print(flask_fal_proxy.__file__)"], cwd=checkout,
                         env=checkout_env(checkout), capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: flask_fal_proxy does not import:\n{out.stderr[-2000:]}")
    found = out.stdout.strip()
    if not Path(found).resolve().is_relative_to(checkout.resolve()):
        raise SystemExit(f"{checkout}: the proxy would import {found}, not this checkout's code")
    return found


def run(checkouts: list[Path], rounds: int, pairs: int, seconds: float) -> dict[str, Any]:
    labelled = dict(zip(LABELS, checkouts, strict=True))
    found = {label: package_file(path) for label, path in labelled.items()}
    workdir = Path(tempfile.mkdtemp(prefix="fal-proxy-compare-"))
    workdir.chmod(0o755)  # nginx's workers drop root
    upstream = Upstream(workdir, free_port(), free_port())
    sides = [Side(label, lambda path=path: recommended(upstream.port, path),
                  lambda path=path: micro(path, 3000)) for label, path in labelled.items()]
    try:
        upstream.start(MIB)
        sat = run_rounds(sides, upstream, workdir, rounds, pairs, seconds)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"checkouts": {label: str(path) for label, path in labelled.items()},
            "packages": found, **sat, "summary": summarise(sat["samples"])}


def summarise(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per figure: each side's median, and the median and quartiles of the paired ratios."""
    return {key: paired(samples, "old", "new", key) for key, _ in FIGURES}


def print_report(results: dict[str, Any], out: Any = sys.stdout) -> None:
    w = out.write
    summary = results["summary"]
    count = {label: errors(results["samples"], label) for label in LABELS}
    w(f"\nThe fal route, recommended setup (gevent): {results['rounds']} rounds of "
      f"{results['pairs']} alternating pairs, {results['seconds']:.0f} s per wrk run\n"
      f"Load average (1, 5, 15 min) before / after: {results['load']} on {os.cpu_count()} CPU; "
      "the quartiles of the paired ratios are the noise this machine allowed\n\n")
    for label in LABELS:
        w(f"{label}: {results['checkouts'][label]} (imports {results['packages'][label]})\n")
    w("\n| figure | old (median) | new (median) | new / old (median of pairs) | "
      "quartiles of new / old | pairs |\n|---|---|---|---|---|---|\n")
    for key, title in FIGURES:
        s = summary[key]
        w(f"| {title} | {s['old']:.0f} | {s['new']:.0f} | {s['ratio']:.3f} | "
          f"{s['q1']:.3f} to {s['q3']:.3f} | {s['n']} |\n")
    w(f"\nErrors: old {count['old']}, new {count['new']}\n")
    titles = dict(FIGURES)
    verdict = [f"{titles[key]}: {summary[key]['ratio']:.3f}x "
               f"({'within' if abs(summary[key]['ratio'] - 1) <= 0.05 else 'NOT within'} 5%)"
               for key in BAR]
    w("Issue 14's bar: " + "; ".join(verdict) + "\n\n")


def main(dirs: list[Path], rounds: int, pairs: int, seconds: float,
         json_out: Path | None) -> int:
    """``bench/run --compare OLD [NEW]``: NEW defaults to this checkout."""
    if len(dirs) not in (1, 2):
        raise SystemExit("--compare takes OLD_DIR and optionally NEW_DIR (default: this checkout)")
    checkouts = [d.resolve() for d in dirs] + ([ROOT] if len(dirs) == 1 else [])
    for path in checkouts:
        if not (path / "bench" / "proxy_app.py").exists():
            raise SystemExit(f"{path} is not a checkout of flask-fal-proxy (no bench/proxy_app.py)")
    results = run(checkouts, rounds, pairs, seconds)
    print_report(results)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
    return 0
