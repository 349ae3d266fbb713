"""Labelled subjects up at once, short wrk runs alternating between them, in one sitting.

On a shared machine figures taken minutes apart differ by more than the
change being judged. So the subjects run at once against the same nginx,
and short wrk runs go to each in turn, the order rotated from one set of
runs to the next (A B, then B A; A B C, B C A, C A B): each set sees the
same machine, and the figure compared is the median of the sets' ratios to
the first label, with quartiles for the noise. Each round starts every
subject afresh, so one lucky process does not decide it, and times the
upstream alone, so *added* p50 subtracts the floor of the same minute. Each
round also runs ``bench/micro.py`` once per label (the call inside the WSGI
app, no server), the steadiest CPU figure there is.

``compare`` uses it for two checkouts, ``usage_cost`` for the proxy with
and without usage tracking.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wrk
from probes import verify
from subjects import Subject
from upstream import FAL_KEY, Upstream


@dataclass
class Side:
    """One label of the sitting: how to make its subject anew, and its micro figure."""

    label: str
    make: Callable[[], Subject]
    micro: Callable[[], float]


def checkout_env(checkout: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}), "PYTHONPATH": os.pathsep.join(
        filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))}


def micro(checkout: Path, requests: int, extra_env: dict[str, str] | None = None) -> float:
    """The checkout's own ``bench/micro.py``: CPU per call of its fastest loop of three."""
    out = subprocess.run(
        [sys.executable, str(checkout / "bench" / "micro.py"), "--requests", str(requests),
         "--repeat", "3", "--max-seconds", "60"],
        cwd=checkout, env=checkout_env(checkout, extra_env), capture_output=True, text=True,
        timeout=180,
    )
    match = re.search(r"(\d+) us CPU and \d+ us wall per call", out.stdout)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"{checkout}/bench/micro.py failed:\n{out.stdout}\n{out.stderr}")
    return float(match[1])


def rotated(labels: list[str], shift: int) -> list[str]:
    shift %= len(labels)
    return labels[shift:] + labels[:shift]


def one_round(n: int, sides: list[Side], upstream: Upstream, workdir: Path,
              pairs: int, seconds: float) -> list[dict[str, Any]]:
    """Every subject up at once; ``pairs`` sets of runs at c=1 and at c=64, order rotated."""
    labels = [side.label for side in sides]
    subjects: dict[str, Subject] = {}
    alone = Subject("upstream alone (nginx)", upstream.port, "/", f"Key {FAL_KEY}")
    samples = []
    try:
        for side in sides:
            subjects[side.label] = subject = side.make()
            subject.start(workdir)
            verify(subject)
            wrk.run(subject, 64, 1)  # every worker warm, its pool opened
        floor = wrk.run(alone, 1, seconds)["p50_us"]
        for k in range(pairs):
            order = rotated(labels, n + k)
            sample: dict[str, Any] = {"round": n, "upstream_p50_us": floor,
                                      **{label: {} for label in labels}}
            for c in (1, 64):
                for label in order:
                    r = wrk.run(subjects[label], c, seconds)
                    figures = sample[label]
                    figures[f"cpu_us_c{c}"] = r["cpu_us_per_request"]
                    figures["errors"] = figures.get("errors", 0) + r["errors"]
                    if "companion_cpu_us_per_request" in r:
                        figures[f"companion_cpu_us_c{c}"] = r["companion_cpu_us_per_request"]
                    if c == 1:
                        figures["added_p50_us"] = r["p50_us"] - floor
                    else:
                        figures["rps_c64"] = r["rps"]
            samples.append(sample)
    finally:
        for subject in subjects.values():
            subject.stop()
    by_label = {label: next(s for s in sides if s.label == label).micro()
                for label in rotated(labels, n)}
    for sample in samples:
        for label in labels:
            sample[label]["micro_cpu_us"] = by_label[label]
    return samples


def run_rounds(sides: list[Side], upstream: Upstream, workdir: Path, rounds: int, pairs: int,
               seconds: float) -> dict[str, Any]:
    """``rounds`` rounds against a running ``upstream``, a progress line after each."""
    samples: list[dict[str, Any]] = []
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    began = time.monotonic()
    for n in range(rounds):
        new = one_round(n, sides, upstream, workdir, pairs, seconds)
        samples.extend(new)
        last = new[-1]
        print(f"   round {n + 1}/{rounds}: " + "; ".join(
            f"{side.label} {last[side.label]['cpu_us_c64']:.0f} us CPU per call at c=64, "
            f"added p50 {last[side.label]['added_p50_us'] / 1000:.3f} ms, micro "
            f"{last[side.label]['micro_cpu_us']:.0f} us" for side in sides), flush=True)
    return {"seconds": seconds, "rounds": rounds, "pairs": pairs,
            "load": f"{load_before} / {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            "elapsed_s": round(time.monotonic() - began, 1), "samples": samples}


def paired(samples: list[dict[str, Any]], base: str, label: str,
           key: str) -> dict[str, Any] | None:
    """``label``'s median of ``key`` and ``base``'s, the median and quartiles of their ratios.

    The micro figure is one per round, not per set of runs, so it is taken
    once a round. ``ratio`` is None where ``base`` has no such figure (the
    CPU of a companion only one side has); None as a whole where ``label``
    has none either.
    """
    rows = samples if key != "micro_cpu_us" else [
        s for i, s in enumerate(samples) if i == 0 or s["round"] != samples[i - 1]["round"]]
    rows = [s for s in rows if s[label].get(key) is not None]
    if not rows:
        return None
    values = [s[label][key] for s in rows]
    out: dict[str, Any] = {label: statistics.median(values)}
    bases = [s[base].get(key) for s in rows]
    if any(b is None for b in bases):
        return {**out, "ratio": None, "q1": None, "q3": None, "n": len(values)}
    ratios = sorted(v / b for b, v in zip(bases, values, strict=True) if b)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {base: statistics.median(bases), **out,
            "ratio": statistics.median(ratios) if ratios else float("nan"),
            "q1": q[0] if q else float("nan"), "q3": q[-1] if q else float("nan"),
            "n": len(ratios)}


def errors(samples: list[dict[str, Any]], label: str) -> int:
    return sum(s[label]["errors"] for s in samples)
