"""Two checkouts of the proxy on the fal route, alternating, in one sitting.

A refactor must not cost what it organises, and on a shared machine figures
taken minutes apart differ by more than the change being judged. So both
checkouts run at once against the same nginx, and short wrk runs alternate
between them (A B, then B A, ...): each pair of runs sees the same machine,
and the figure compared is the median of the pairs' ratios. Each round
starts both proxies afresh, so one lucky process does not decide it, and
times the upstream alone, so *added* p50 subtracts the floor of the same
minute. Each round also runs each checkout's ``bench/micro.py`` (the call
inside the WSGI app, no server), the steadiest CPU figure there is.
Comparing a checkout with itself shows the noise floor.
"""

from __future__ import annotations

import json
import os
import re
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

LABELS = ("old", "new")
FIGURES = (
    ("cpu_us_c64", "CPU us/call, c=64 (gunicorn)"),
    ("cpu_us_c1", "CPU us/call, c=1 (gunicorn)"),
    ("added_p50_us", "added p50 us, c=1"),
    ("micro_cpu_us", "CPU us/call in the WSGI app (micro.py)"),
    ("rps_c64", "req/s, c=64"),
)
BAR = ("cpu_us_c64", "added_p50_us")  # issue 14: within 5% of before


def checkout_env(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))}


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


def micro(checkout: Path, requests: int) -> float:
    """The checkout's own ``bench/micro.py``: CPU per call of its fastest loop of three."""
    out = subprocess.run(
        [sys.executable, str(checkout / "bench" / "micro.py"), "--requests", str(requests),
         "--repeat", "3", "--max-seconds", "60"],
        cwd=checkout, env=checkout_env(checkout), capture_output=True, text=True, timeout=180,
    )
    match = re.search(r"(\d+) us CPU and \d+ us wall per call", out.stdout)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"{checkout}/bench/micro.py failed:\n{out.stdout}\n{out.stderr}")
    return float(match[1])


def one_round(n: int, checkouts: dict[str, Path], upstream: Upstream, workdir: Path,
              pairs: int, seconds: float) -> list[dict[str, Any]]:
    """Both proxies up at once; ``pairs`` alternating pairs of runs at c=1 and at c=64."""
    subjects = {label: recommended(upstream.port, path) for label, path in checkouts.items()}
    alone = Subject("upstream alone (nginx)", upstream.port, "/", f"Key {FAL_KEY}")
    samples = []
    try:
        for subject in subjects.values():
            subject.start(workdir)
            verify(subject)
            wrk.run(subject, 64, 1)  # every worker warm, its pool opened
        floor = wrk.run(alone, 1, seconds)["p50_us"]
        for k in range(pairs):
            order = list(LABELS) if (n + k) % 2 == 0 else list(reversed(LABELS))
            sample: dict[str, Any] = {"round": n, "upstream_p50_us": floor,
                                      **{label: {} for label in LABELS}}
            for c in (1, 64):
                for label in order:
                    r = wrk.run(subjects[label], c, seconds)
                    figures = sample[label]
                    figures[f"cpu_us_c{c}"] = r["cpu_us_per_request"]
                    figures["errors"] = figures.get("errors", 0) + r["errors"]
                    if c == 1:
                        figures["added_p50_us"] = r["p50_us"] - floor
                    else:
                        figures["rps_c64"] = r["rps"]
            samples.append(sample)
    finally:
        for subject in subjects.values():
            subject.stop()
    order = list(LABELS) if n % 2 == 0 else list(reversed(LABELS))
    by_label = {label: micro(checkouts[label], 3000) for label in order}
    for sample in samples:
        for label in LABELS:
            sample[label]["micro_cpu_us"] = by_label[label]
    return samples


def run(checkouts: list[Path], rounds: int, pairs: int, seconds: float) -> dict[str, Any]:
    labelled = dict(zip(LABELS, checkouts, strict=True))
    found = {label: package_file(path) for label, path in labelled.items()}
    workdir = Path(tempfile.mkdtemp(prefix="fal-proxy-compare-"))
    workdir.chmod(0o755)  # nginx's workers drop root
    upstream = Upstream(workdir, free_port(), free_port())
    samples: list[dict[str, Any]] = []
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        upstream.start(MIB)
        for n in range(rounds):
            new = one_round(n, labelled, upstream, workdir, pairs, seconds)
            samples.extend(new)
            last = new[-1]
            print(f"   round {n + 1}/{rounds}: " + "; ".join(
                f"{label} {last[label]['cpu_us_c64']:.0f} us CPU per call at c=64, added p50 "
                f"{last[label]['added_p50_us'] / 1000:.3f} ms, micro "
                f"{last[label]['micro_cpu_us']:.0f} us" for label in LABELS), flush=True)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"checkouts": {label: str(path) for label, path in labelled.items()},
            "packages": found, "seconds": seconds, "rounds": rounds, "pairs": pairs,
            "load": f"{load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            "samples": samples, "summary": summarise(samples)}


def summarise(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per figure: each side's median, and the median and quartiles of the paired ratios.

    The micro figure is one per round, not per pair, so it is taken once a round.
    """
    out = {}
    for key, _ in FIGURES:
        rows = samples if key != "micro_cpu_us" else [
            s for i, s in enumerate(samples) if i == 0 or s["round"] != samples[i - 1]["round"]]
        old = [s["old"][key] for s in rows]
        new = [s["new"][key] for s in rows]
        ratios = sorted(n / o for o, n in zip(old, new, strict=True) if o)
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        out[key] = {"old": statistics.median(old), "new": statistics.median(new),
                    "ratio": statistics.median(ratios) if ratios else float("nan"),
                    "q1": q[0], "q3": q[-1], "n": len(ratios)}
    return out


def print_report(results: dict[str, Any], out: Any = sys.stdout) -> None:
    w = out.write
    summary = results["summary"]
    errors = {label: sum(s[label]["errors"] for s in results["samples"]) for label in LABELS}
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
    w(f"\nErrors: old {errors['old']}, new {errors['new']}\n")
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
