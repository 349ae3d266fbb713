"""Load from wrk: one thread, the POST ``@fal-ai/client`` sends, one JSON line of results.

``post.lua`` prints the figures as a ``BENCH_RESULT`` line rather than
wrk's human summary, so nothing here parses units. CPU time is read from
/proc around the run for the subject's whole process tree (and separately
for its companions, such as redis), since the proxy's cost per call is the
figure that matters on a shared machine, more than its speed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from processes import BENCH, cpu_seconds
from subjects import PROXY_ROUTE, Subject
from upstream import TARGET


def argv(subject: Subject, connections: int, seconds: float, target: str = TARGET,
         timeout: float = 10) -> list[str]:
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", f"{timeout:.0f}s", "-s", str(BENCH / "post.lua"),
        f"http://127.0.0.1:{subject.port}{subject.url_path(target)}",
    ]


def env(subject: Subject, target: str = TARGET, max_requests: int = 0) -> dict[str, str]:
    values = {**os.environ, "BENCH_TARGET": target if subject.path == PROXY_ROUTE else ""}
    if subject.auth:
        values["BENCH_AUTH"] = subject.auth
    if max_requests:
        values["BENCH_MAX_REQUESTS"] = str(max_requests)
    return values


def parse(subject: Subject, stdout: str, stderr: str) -> dict:
    match = re.search(r"^BENCH_RESULT (\{.*\})$", stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk gave no result for {subject.name}:\n{stdout}\n{stderr}")
    result = json.loads(match[1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def run(subject: Subject, connections: int, seconds: float, target: str = TARGET,
        timeout: float = 10) -> dict:
    """One timed run, with the CPU the subject (and its companions) spent per request."""
    before, before_companions = cpu_seconds(subject.pids()), cpu_seconds(subject.companion_pids())
    out = subprocess.run(
        argv(subject, connections, seconds, target, timeout), capture_output=True, text=True,
        env=env(subject, target), timeout=seconds + timeout + 60,
    )
    cpu = cpu_seconds(subject.pids()) - before
    companion_cpu = cpu_seconds(subject.companion_pids()) - before_companions
    result = parse(subject, out.stdout, out.stderr)
    requests = result["requests"]
    result["cpu_us_per_request"] = cpu * 1e6 / requests if subject.started and requests else None
    if subject.companions and requests:
        result["companion_cpu_us_per_request"] = companion_cpu * 1e6 / requests
    return result
