"""The report: every phase's figures as Markdown tables, and the targets they meet or miss.

Figures are only comparable within one run, so each row is also given as a
ratio to the Node proxy measured minutes apart on the same machine, and
latency as what the proxy *adds* to the upstream answering alone. Nothing
here measures; it reads the results dictionary the harness also writes as
JSON, so a run can be re-reported from its file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from upstream import PROBE_BODY

NODE = "node @fal-ai/server-proxy"


def fmt_ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def ratio(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return "-"
    return f"{value / ref:.2f}x"


def print_report(results: dict[str, Any], out: Any = sys.stdout) -> None:
    w = out.write
    rows = results["subjects"]
    ref = rows.get(NODE, {})
    up = rows.get("upstream alone (nginx)", {})
    w(f"\nMachine: {results['machine']}\nLoad average (1, 5, 15 min) before / after: "
      f"{results['load_before']} / {results['load_after']}\n")
    if results.get("busy"):
        w(f"Other heavy processes at the start: {len(results['busy'])} (figures distorted)\n")
    w(f"wrk: -t1, {results['seconds']:.0f}s per run, POST {len(PROBE_BODY)} B JSON; "
      "ratios are to the Node proxy in this run (rps: higher is better; latency: lower)\n\n")
    head = ("| subject | c | req/s | x node | p50 ms | x node | p99 ms | x node | "
            "added p50 ms | CPU us/req | errors |\n")
    w(head)
    w("|" + "---|" * 11 + "\n")
    for name, r in rows.items():
        for c in ("1", "64"):
            m = r.get("load", {}).get(c)
            if not m:
                continue
            refm = ref.get("load", {}).get(c, {})
            upm = up.get("load", {}).get(c, {})
            added = (m["p50_us"] - upm["p50_us"]) if upm and r is not up else None
            cpu = m.get("cpu_us_per_request")
            w(f"| {name} | {c} | {m['rps']:.0f} | {ratio(m['rps'], refm.get('rps'))} | "
              f"{fmt_ms(m['p50_us'])} | {ratio(m['p50_us'], refm.get('p50_us'))} | "
              f"{fmt_ms(m['p99_us'])} | {ratio(m['p99_us'], refm.get('p99_us'))} | "
              f"{fmt_ms(added)} | {'-' if cpu is None else f'{cpu:.0f}'} | {m['errors']} |\n")
    if results.get("skipped"):
        w("\n" + "".join(f"Not run: {note}\n" for note in results["skipped"]))
    print_usage_cost(results.get("usage"), out)
    w("\nServer-sent events (one every 100 ms, delay from upstream write to client read)\n\n")
    w("| subject | events | median ms | max ms | added median ms | added max ms |\n")
    w("|---|---|---|---|---|---|\n")
    base = up.get("sse", {}).get("median_ms")
    for name, r in rows.items():
        s = r.get("sse")
        if s:
            added = [x - base if base is not None and r is not up else None
                     for x in (s["median_ms"], s["max_ms"])]
            w(f"| {name} | {s['events']}/{s['expected']} | {s['median_ms']:.2f} | "
              f"{s['max_ms']:.2f} | " + " | ".join("-" if a is None else f"{a:.2f}" for a in added)
              + " |\n")
    w("\nUpstream connections (nginx accepts) for a bounded run at concurrency 64\n\n")
    w("| subject | requests | connections | worker threads | errors |\n|---|---|---|---|---|\n")
    for name, r in rows.items():
        k = r.get("keepalive")
        if k:
            w(f"| {name} | {k['requests']} | {k['connections']} | {r.get('threads') or '-'} | "
              f"{k['errors']} |\n")
    w("\nWorker peak RSS growth (VmHWM after minus VmRSS before, largest worker)\n\n")
    w("| subject | response body | growth MiB | MiB/s | request body | growth MiB |\n")
    w("|---|---|---|---|---|---|\n")
    for name, r in rows.items():
        m = r.get("memory")
        if m:
            w(f"| {name} | {m['download_mib']:.0f} MiB | {m['download_growth_mib']:.1f} | "
              f"{m['download_mib_per_s']:.0f} | {m['upload_mib']:.0f} MiB | "
              f"{m['upload_growth_mib']:.1f} |\n")
    if "long" in results:
        print_long_report(results["long"], out)
    targets = results.get("targets") or {}
    names = [n for n in targets if targets[n]]
    if names:
        w("\nTargets\n\n| target | " + " | ".join(names) + " |\n")
        w("|---|" + "---|" * len(names) + "\n")
        by_target = {n: {t["target"]: t for t in targets[n]} for n in names}
        order = list(dict.fromkeys(t["target"] for n in names for t in targets[n]))
        for target in order:
            cells = []
            for n in names:
                row = by_target[n].get(target)
                verdict = "met" if row and row["met"] else "NOT MET"
                cells.append(f"{row['figure']}: {verdict}" if row else "-")
            w(f"| {target} | " + " | ".join(cells) + " |\n")
    w("\n")


def print_usage_cost(usage: dict[str, Any] | None, out: Any = sys.stdout) -> None:
    """The paired phase: each usage subject against the same proxy without tracking."""
    if not usage:
        return
    w = out.write
    base = usage["baseline"]
    w(f"\nWhat usage tracking costs (up at once with the proxy without it, in "
      f"{usage.get('elapsed_s', 0):.0f} s: rounds {usage['rounds']}, sets of runs per round "
      f"{usage['pairs']} in rotated order, {usage['seconds']:.0f} s per wrk run; load average "
      f"before / after {usage['load']}; x without: median of the paired ratios "
      "[quartiles])\n\n")
    w("| subject | load | CPU us/req | x without | added p50 ms | x without | "
      "redis CPU us/req | errors |\n|" + "---|" * 8 + "\n")
    rows = (("c=1", "cpu_us_c1", "added_p50_us", "companion_cpu_us_c1"),
            ("c=64", "cpu_us_c64", None, "companion_cpu_us_c64"),
            ("micro.py, no server", "micro_cpu_us", None, None))
    summary = usage["summary"]
    for side, figures in [(base, next(iter(summary.values()))), *summary.items()]:
        for load, cpu, added, redis in rows:
            cells = [_paired(figures.get(cpu), side, base, _us),
                     _paired(figures.get(added), side, base, fmt_ms) if added else "- | -",
                     _us((figures.get(redis) or {}).get(side)) if redis else "-",
                     str(usage["errors"][side]) if load == "c=1" else ""]
            w(f"| {usage['names'][side]} | {load} | " + " | ".join(cells) + " |\n")
    w("\nadded p50: over nginx answering alone, at c=1; at c=64 the median is queueing, "
      "which CPU per request already measures\n")


def _paired(figure: dict[str, Any] | None, side: str, base: str,
            fmt: Callable[[float | None], str]) -> str:
    """A median and its ratio to the proxy without tracking (1 for that proxy itself)."""
    if not figure or side not in figure:
        return "- | -"
    if side == base:
        return f"{fmt(figure[side])} | 1.00x"
    if figure["ratio"] is None:
        return f"{fmt(figure[side])} | -"
    return (f"{fmt(figure[side])} | {figure['ratio']:.2f}x "
            f"[{figure['q1']:.2f}-{figure['q3']:.2f}]")


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def evaluate_usage(results: dict[str, Any]) -> dict[str, list[dict]]:
    """Issue 16's bar: tracking spend in memory costs at most a tenth more CPU per call.

    Decided by the median of the paired ratios at c=64, never by two runs
    minutes apart.
    """
    usage = results.get("usage") or {}
    targets: dict[str, list[dict]] = {}
    for label, figures in usage.get("summary", {}).items():
        x = (figures.get("cpu_us_c64") or {}).get("ratio")
        if not label.endswith("memory") or x is None:
            continue
        f = figures["cpu_us_c64"]
        targets[usage["names"][label]] = [{
            "target": "CPU per call at c=64 with track_usage on memory <= 1.10x without",
            "figure": f"{x:.3f}x (median of {f['n']} pairs, quartiles {f['q1']:.2f} to "
                      f"{f['q3']:.2f})", "met": x <= 1.10}]
    return targets


def evaluate(results: dict[str, Any], ours: str, keepalive_requests: int) -> list[dict]:
    rows = results["subjects"]
    node, up, r = (rows.get(k, {}) for k in
                   (NODE, "upstream alone (nginx)", ours))
    targets = []

    def add(target: str, figure: str, met: bool) -> None:
        targets.append({"target": target, "figure": figure, "met": met})

    try:
        x = r["load"]["64"]["rps"] / node["load"]["64"]["rps"]
        add("req/s at c=64 >= 1.0x node", f"{x:.2f}x", x >= 1.0)
    except KeyError:
        pass
    try:
        added = (r["load"]["1"]["p50_us"] - up["load"]["1"]["p50_us"]) / 1000
        add("added p50 at c=1 <= 1.0 ms", f"{added:.2f} ms", added <= 1.0)
    except KeyError:
        pass
    try:
        s = r["sse"]
        added = s["median_ms"] - up["sse"]["median_ms"]
        held = s["events"] != s["expected"] or s["max_ms"] >= 100
        add("SSE added median < 5 ms, none held back",
            f"{added:.2f} ms, max {s['max_ms']:.1f} ms, {s['events']}/{s['expected']}",
            added < 5 and not held)
    except KeyError:
        pass
    try:
        m = r["memory"]
        add(f"{m['download_mib']:.0f} MiB response: RSS growth < 32 MiB",
            f"{m['download_growth_mib']:.1f} MiB", m["download_growth_mib"] < 32)
    except KeyError:
        pass
    try:
        k = r["keepalive"]
        # A worker without threads (gevent) runs one call per browser connection.
        limit, unit = (r["threads"], "threads") if r["threads"] else (64, "calls in flight")
        add(f"<= 1 upstream connection per worker thread over {keepalive_requests} requests",
            f"{k['connections']} for {k['requests']} requests, {limit} {unit}",
            k["connections"] <= limit and k["requests"] >= keepalive_requests)
    except KeyError:
        pass
    return targets


def print_long_report(results: dict, out: Any = sys.stdout) -> None:
    w = out.write
    rows = results["subjects"]
    node = rows.get(NODE, {})
    node_cases = {(c["hold_s"], c["calls"]): c for c in node.get("cases", [])}
    w("\nHeld calls (fal answers each call after D s; wrk keeps C connections busy)\n\n")
    w("| subject | D s | C | run s | req/s | ideal req/s | % of ideal | x node | p50 s | p99 s | "
      "completed | errors | peak RSS MiB | RSS KiB per held call | peak fds | CPU us/req |\n")
    w("|" + "---|" * 16 + "\n")
    for name, r in rows.items():
        for c in r.get("cases", []):
            ref = node_cases.get((c["hold_s"], c["calls"]))
            cpu = c["cpu_us_per_request"]
            w(f"| {name} | {c['hold_s']:g} | {c['calls']} | {c['seconds']} | {c['rps']:.0f} | "
              f"{c['ideal_rps']:.0f} | {100 * c['requests'] / c['expected']:.0f}% | "
              f"{ratio(c['rps'], ref['rps'] if ref else None)} | "
              f"{c['p50_us'] / 1e6:.2f} | {c['p99_us'] / 1e6:.2f} | "
              f"{c['requests']}/{c['expected']} | {c['errors']} | "
              f"{c['peak_rss_mib']:.0f} | {c['rss_kib_per_call']:.1f} | {c['peak_fds']} | "
              f"{'-' if cpu is None else f'{cpu:.0f}'} |\n")
    base = rows.get("upstream alone (holding server)", {}).get("streams", {})
    w("\nStatus streams open at once (an event every 100 ms; delay from upstream write to "
      "client read)\n\n")
    w("| subject | streams | events | median ms | p99 ms | max ms | added median ms | "
      "added max ms |\n|" + "---|" * 8 + "\n")
    for name, r in rows.items():
        s = r.get("streams")
        if not s or s["median_ms"] is None:
            continue
        direct = s is base
        w(f"| {name} | {s['complete_streams']}/{s['streams']} | {s['events']}/{s['expected']} | "
          f"{s['median_ms']:.2f} | {s['p99_ms']:.2f} | {s['max_ms']:.2f} | "
          + ("- | - |" if direct else f"{s['median_ms'] - base['median_ms']:.2f} | "
             f"{s['max_ms'] - base['max_ms']:.2f} |") + "\n")
    w("\nA normal call while clients send their headers and then stall\n\n")
    w("| subject | stalled clients | median alone ms | median during ms | max during ms | "
      "added max ms | failed |\n|" + "---|" * 7 + "\n")
    for name, r in rows.items():
        s = r.get("stalled")
        if s:
            f = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
            w(f"| {name} | {s['stalled']} | {f(s['before_median_ms'])} | "
              f"{f(s['during_median_ms'])} | {f(s['during_max_ms'])} | {f(s['added_max_ms'])} "
              f"| {s['failed']}/{s['probes']} |\n")
    for note in results.get("skipped", []):
        w(f"\nNot run: {note}")
    w("\n")


def evaluate_long(results: dict, ours: str) -> list[dict]:
    rows = results["subjects"]
    r = rows.get(ours, {})
    node = {(c["hold_s"], c["calls"]): c
            for c in rows.get(NODE, {}).get("cases", [])}
    base = rows.get("upstream alone (holding server)", {}).get("streams")
    targets = []
    for c in r.get("cases", []):
        ideal = f"{100 * c['requests'] / c['expected']:.0f}% of ideal"
        if c["hold_s"] == 2 and c["calls"] == 2000:
            ref = node.get((2, 2000))
            x = c["rps"] / ref["rps"] if ref else None
            p99 = c["p99_us"] / 1e6
            targets.append({
                "target": "2,000 held calls of 2 s: req/s >= 1.0x node, 0 errors, p99 <= 3 s",
                "figure": f"{'-' if x is None else f'{x:.2f}x'} ({ideal}), {c['errors']} "
                          f"errors, p99 {p99:.2f} s",
                "met": x is not None and x >= 1.0 and c["errors"] == 0 and p99 <= 3.0,
            })
        if c["hold_s"] == 30 and c["calls"] == 5000:
            targets.append({
                "target": "5,000 held calls of 30 s: all complete, 0 errors",
                "figure": f"{c['requests']} of {c['expected']} ({ideal}), {c['errors']} errors, "
                          f"{c['rss_kib_per_call']:.1f} KiB per held call",
                "met": c["errors"] == 0 and c["requests"] >= c["expected"],
            })
    s = r.get("streams")
    if s and base and s["median_ms"] is not None:
        added, added_max = s["median_ms"] - base["median_ms"], s["max_ms"] - base["max_ms"]
        targets.append({
            "target": f"{s['streams']:,} streams: added median < 2 ms, max < 50 ms, none lost",
            "figure": f"{added:.2f} ms, max {added_max:.1f} ms, {s['events']}/{s['expected']}",
            "met": added < 2 and added_max < 50 and s["events"] == s["expected"],
        })
    st = r.get("stalled")
    if st:
        added = st["added_max_ms"]
        targets.append({
            "target": f"{st['stalled']:,} stalled clients delay a call by <= 50 ms",
            "figure": "-" if added is None else f"{added:.1f} ms, {st['failed']} failed",
            "met": added is not None and added <= 50 and st["failed"] == 0,
        })
    return targets
