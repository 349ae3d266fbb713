"""What usage tracking costs: the proxy with and without ``track_usage``, up at once.

One run per subject, minutes apart, differs by a fifth on a shared machine,
more than the tenth issue 16 allows tracking. So the recommended setup and
each chosen usage subject (memory, Redis with its own redis-server) go to
``pairs`` together: short wrk runs in rotated order at c=1 and c=64, a few
rounds each starting them afresh, and ``bench/micro.py`` with and without
``BENCH_USAGE_STORAGE`` per round (on Redis against a redis-server of its
own). Each figure is the median of the per-set ratios to the proxy without
tracking, so the machine's drift cancels out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pairs import Side, errors, micro, paired, run_rounds
from processes import ROOT, start
from subjects import Subject, Unavailable, redis_companion
from upstream import Upstream

BASELINE = "gevent"
STORAGE = {"gevent-usage-memory": "memory", "gevent-usage-redis": "redis"}
FIGURES = ("cpu_us_c1", "cpu_us_c64", "added_p50_us", "micro_cpu_us", "rps_c64",
           "companion_cpu_us_c1", "companion_cpu_us_c64")


def micro_with(storage: str | None, workdir: Path, requests: int) -> float:
    """``bench/micro.py`` of this checkout, tracking on ``storage`` (None: not tracking)."""
    if storage is None:
        return micro(ROOT, requests)
    if storage == "memory":
        return micro(ROOT, requests, {"BENCH_USAGE_STORAGE": "memory://"})
    redis = redis_companion()
    started = start(f"{redis.name} for micro.py", redis.argv, redis.port, workdir, {})
    try:
        return micro(ROOT, requests, {"BENCH_USAGE_STORAGE": f"redis://127.0.0.1:{redis.port}"})
    finally:
        started.stop()


def run(catalogue: dict[str, Callable[[], Subject]], which: set[str], upstream: Upstream,
        workdir: Path, rounds: int, pairs: int, seconds: float,
        micro_requests: int) -> dict[str, Any] | None:
    """The paired phase for the usage subjects in ``which``; None if none of them can run."""
    names = {}
    for label in [BASELINE, *(k for k in STORAGE if k in which)]:
        try:
            names[label] = catalogue[label]().name
        except Unavailable:
            continue
    if len(names) < 2 or BASELINE not in names or rounds < 1 or pairs < 1:
        return None
    sides = [Side(label, catalogue[label],
                  lambda label=label: micro_with(STORAGE.get(label), workdir, micro_requests))
             for label in names]
    sat = run_rounds(sides, upstream, workdir, rounds, pairs, seconds)
    samples = sat["samples"]
    return {
        "baseline": BASELINE, "names": names, **sat,
        "errors": {label: errors(samples, label) for label in names},
        "summary": {label: {key: paired(samples, BASELINE, label, key) for key in FIGURES}
                    for label in names if label != BASELINE},
    }
