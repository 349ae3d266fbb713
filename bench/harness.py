"""Side-by-side benchmark of fal proxies on one machine, in one run.

Everything runs on 127.0.0.1: nginx plays fal (a fixed JSON answer, a large
file, and an event stream relayed from ``sse_upstream.py``), each proxy under
test sends fal's real URLs there, and ``wrk`` drives the load. Figures are
only comparable within a run, so every proxy is reported as a ratio to the
Node reference measured minutes apart on the same machine, and the machine
load is printed with them. A ratio that must hold within a tenth (what usage
tracking costs) is not left to one run each: the subjects run at once,
alternating (``usage_cost``). Each phase is bounded in time and count; every
process the harness starts is stopped by its own PID (or process group) at
the end, whatever happens.

This module only runs the phases in order; what is started, measured and
reported lives in the modules it imports (``subjects``, ``probes``, ``wrk``,
``usage_cost``, ``longcalls``, ``report``), none of which imports it.
``--compare`` hands over to ``compare`` instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import compare
import longcalls
import probes
import report
import usage_cost
import wrk
from processes import busy_processes, free_port
from subjects import ALL_SUBJECTS, choose, subject_catalogue
from upstream import MIB, Upstream

LONG_CASES = "2x512,2x2000,2x5000,30x512,30x2000,30x5000"


def machine() -> str:
    cpu = "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{os.cpu_count()} CPU ({cpu}), Linux {os.uname().release}, Python "
            f"{sys.version.split()[0]}, Node {node}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, smaller bodies")
    parser.add_argument("--seconds", type=float, help="length of each timed wrk run")
    parser.add_argument(
        "--only", default=ALL_SUBJECTS,
        help=f"comma-separated subjects (default: {ALL_SUBJECTS})",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--long", default="node,gevent,gthread",
        help="subjects of the long-call phase, or 'none' (default: node,gevent,gthread)",
    )
    parser.add_argument(
        "--long-cases",
        help=f"held-call cases, DxC (default: {LONG_CASES}; --quick: 1x64)",
    )
    parser.add_argument("--streams", type=int, help="status streams at once (default 1000)")
    parser.add_argument("--stalled", type=int, help="clients that stall mid-body (default 2000)")
    parser.add_argument(
        "--compare", nargs="+", type=Path, metavar="DIR",
        help="instead of the run: OLD_DIR [NEW_DIR] (default NEW: this checkout), the fal "
             "route of both alternating in one sitting, CPU per call and added p50 of each",
    )
    parser.add_argument(
        "--rounds", type=int,
        help="paired phases: rounds, each starting the proxies afresh (--compare: default 4; "
             "usage tracking: default 3, --quick 1, 0 skips it)",
    )
    parser.add_argument(
        "--pairs", type=int,
        help="paired phases: sets of alternating runs per round (--compare: default 4; "
             "usage tracking: default 2)",
    )
    parser.add_argument(
        "--pair-seconds", type=float,
        help="usage tracking's paired phase: length of each wrk run (default 2, --quick 1)",
    )
    return parser.parse_args()


def measure(subject: Any, upstream: Upstream, workdir: Path, plan: dict[str, Any]) -> dict:
    """Every short-call probe of one subject, started and stopped around them."""
    since = upstream.counters()
    subject.start(workdir)
    try:
        row: dict[str, Any] = {"threads": subject.threads}
        if subject.compared_with:
            row["compared_with"] = subject.compared_with
        probes.verify(subject)
        if subject.companions:
            row["redis_keys"] = probes.redis_keys(subject)
        if subject.started:
            row["keepalive"] = probes.keepalive_probe(subject, upstream,
                                                      plan["keepalive_requests"], since)
        row["sse"] = probes.sse_probe(subject, plan["sse_events"], 0.1)
        wrk.run(subject, 64, plan["warmup"])
        row["load"] = {}
        for c in (1, 64):
            row["load"][str(c)] = wrk.run(subject, c, plan["seconds"])
            print(f"   c={c}: {row['load'][str(c)]['rps']:.0f} req/s", flush=True)
        if subject.started:
            row["memory"] = probes.memory_probe(subject, plan["big"], plan["post"])
        return row
    finally:
        subject.stop()


def main() -> int:
    args = arguments()
    # A SIGTERM (from timeout, say) unwinds like Ctrl-C, so every process
    # started so far is stopped by the finally clauses below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.compare:
        return compare.main(args.compare, 4 if args.rounds is None else args.rounds,
                            4 if args.pairs is None else args.pairs, args.seconds or 2.0,
                            args.json)
    plan = {
        "seconds": args.seconds or (2.0 if args.quick else 10.0),
        "warmup": 1.0 if args.quick else 3.0,
        "keepalive_requests": 1000 if args.quick else 10000,
        "sse_events": 5 if args.quick else 20,
        "big": (64 if args.quick else 512) * MIB,
        "post": (4 if args.quick else 30) * MIB,
    }
    which = set(filter(None, args.only.split(",")))
    long_which = set() if args.long == "none" else set(filter(None, args.long.split(",")))
    case_list = longcalls.cases(args.long_cases or ("1x64" if args.quick else LONG_CASES),
                                args.quick)
    stream_count = args.streams or (64 if args.quick else 1000)
    stalled = args.stalled or (64 if args.quick else 2000)
    fd_limit = longcalls.raise_fd_limit()
    needed = 2 * max([c.calls for c in case_list] + [stream_count, stalled]) + 1024
    if long_which and fd_limit < needed:
        print(f"warning: the file-descriptor hard limit ({fd_limit}) is below the {needed} "
              "the largest long-call case needs (wrk's side and the proxy's)")

    busy = busy_processes()
    if busy:
        print("warning: other heavy processes are running; figures will be distorted:")
        print("\n".join("  " + b for b in busy))
    workdir = Path(tempfile.mkdtemp(prefix="fal-proxy-bench-"))
    workdir.chmod(0o755)  # nginx's workers drop root and must read the large file
    upstream = Upstream(workdir, free_port(), free_port())
    ours = ""
    results: dict[str, Any] = {
        "machine": machine(),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "busy": busy,
        "seconds": plan["seconds"],
        "subjects": {},
    }
    try:
        upstream.start(plan["big"])
        catalogue = subject_catalogue(upstream.port)
        chosen, results["skipped"] = choose(catalogue, which)
        for note in results["skipped"]:
            print(f"== not run: {note}", flush=True)
        for subject in chosen.values():
            if subject.name.endswith("(recommended)"):
                ours = subject.name
            print(f"== {subject.name}", flush=True)
            results["subjects"][subject.name] = measure(subject, upstream, workdir, plan)
        if which & set(usage_cost.STORAGE):
            rounds = (1 if args.quick else 3) if args.rounds is None else args.rounds
            pairs = 2 if args.pairs is None else args.pairs
            print(f"== usage tracking, paired: {rounds} rounds of {pairs} sets of runs", flush=True)
            paired = usage_cost.run(catalogue, which, upstream, workdir, rounds, pairs,
                                    args.pair_seconds or (1.0 if args.quick else 2.0),
                                    500 if args.quick else 1000)
            if paired:
                results["usage"] = paired
        if long_which:
            results["long"] = longcalls.run(workdir, long_which, case_list, stream_count,
                                            20 if not args.quick else 5, stalled,
                                            (os.cpu_count() or 1) * 16)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["targets"] = {
        name: report.evaluate(results, name, plan["keepalive_requests"])
        for name in results["subjects"]
        if name == ours or "GUNICORN_WORKER_CLASS" in name
    }
    results["targets"].update(report.evaluate_usage(results))
    if "long" in results:
        long_ours = next((n for n in results["long"]["subjects"] if n.endswith("(recommended)")),
                         "")
        results["targets"].setdefault(long_ours, []).extend(
            report.evaluate_long(results["long"], long_ours))
    report.print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
