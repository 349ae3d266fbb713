"""Side-by-side benchmark of fal proxies on one machine, in one run.

Everything runs on 127.0.0.1: nginx plays fal (a fixed JSON answer, a large
file, and an event stream relayed from ``sse_upstream.py``), each proxy under
test sends fal's real URLs there, and ``wrk`` drives the load. Figures are
only comparable within a run, so every proxy is reported as a ratio to the
Node reference measured minutes apart on the same machine, and the machine
load is printed with them. Each phase is bounded in time and count; every
process the harness starts is stopped by its own PID (or process group) at
the end, whatever happens.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import longcalls

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
FAL_KEY = "bench-key-0f3a9c"
PROXY_ROUTE = "/api/fal/proxy"
TARGET = "https://fal.run/fal-ai/fast-sdxl"
FAL_ANSWER = (
    '{"images":[{"url":"https://v3.fal.media/files/bench/out.png","width":1024,'
    '"height":1024,"content_type":"image/png"}],"seed":42,"has_nsfw_concepts":[false],'
    '"prompt":"a lighthouse at dusk, oil painting"}'
)
PROBE_BODY = b'{"prompt":"a lighthouse at dusk, oil painting","image_size":"square_hd","seed":42}'
MIB = 1024 * 1024

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_max_body_size 64m;
    sendfile on;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = /nginx_status {{ stub_status; }}
        location = /bench/big {{
            if ($http_authorization != "Key {key}") {{ return 401; }}
            root {dir}/www;
            default_type application/octet-stream;
        }}
        location = /bench/sse {{
            if ($http_authorization != "Key {key}") {{ return 401; }}
            proxy_pass http://127.0.0.1:{sse_port};
            proxy_buffering off;
        }}
        location / {{
            default_type application/json;
            if ($http_authorization != "Key {key}") {{
                return 401 '{{"detail":"Invalid key"}}';
            }}
            return 200 '{answer}';
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    for child in children_of(pid):
        tree.extend(process_tree(child))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def busy_processes() -> list[str]:
    """Other CPU-heavy programs now running, which would distort the figures."""
    mine = set(process_tree(os.getpid())) | {os.getppid()}
    names = re.compile(r"pytest|wrk|chrom|node|gunicorn|nginx|py-spy|hypothesis")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and names.search(cmd):
            found.append(f"{entry}: {cmd[:100]}")
    return found


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


def start(name: str, argv: list[str], port: int, workdir: Path, env: dict[str, str]) -> Started:
    log = workdir / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=ROOT,
            start_new_session=True,
        )
    started = Started(name, proc, port, log)
    try:
        wait_for_port(port, proc)
    except Exception:
        started.stop()
        raise RuntimeError(f"{name} did not start; see {log}:\n{log.read_text()[-2000:]}") from None
    return started


@dataclass
class Upstream:
    workdir: Path
    port: int
    sse_port: int
    procs: list[Started] = field(default_factory=list)

    def start(self, big_bytes: int) -> None:
        www = self.workdir / "www" / "bench"
        www.mkdir(parents=True)
        with open(www / "big", "wb") as f:
            f.truncate(big_bytes)
        self.procs.append(
            start(
                "sse upstream",
                [sys.executable, str(BENCH / "sse_upstream.py"), str(self.sse_port)],
                self.sse_port,
                self.workdir,
                {},
            )
        )
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=self.workdir,
                port=self.port,
                sse_port=self.sse_port,
                key=FAL_KEY,
                answer=FAL_ANSWER,
            )
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.procs.append(
            start("nginx", [nginx, "-c", str(conf), "-p", str(self.workdir)], self.port,
                  self.workdir, {})
        )

    def counters(self) -> tuple[int, int]:
        """Connections accepted and requests served so far, this query included."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/nginx_status")
        text = conn.getresponse().read().decode()
        conn.close()
        accepts, _, requests = text.splitlines()[2].split()
        return int(accepts), int(requests)

    def stop(self) -> None:
        for started in reversed(self.procs):
            started.stop()


@dataclass
class Subject:
    """One way of answering the browser: a proxy under test, or fal itself."""

    name: str
    port: int
    path: str
    auth: str | None
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    started: Started | None = None

    def headers(self, target: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        if self.path == PROXY_ROUTE:
            headers["x-fal-target-url"] = target
        return headers

    def url_path(self, target: str) -> str:
        return self.path if self.path == PROXY_ROUTE else target.split("fal.run", 1)[1]

    def pids(self) -> list[int]:
        return process_tree(self.started.proc.pid) if self.started else []

    def workers(self) -> list[int]:
        if not self.started:
            return []
        tree = self.pids()
        return tree[1:] or tree


def wrk_argv(subject: Subject, connections: int, seconds: float) -> list[str]:
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(BENCH / "post.lua"), f"http://127.0.0.1:{subject.port}{subject.url_path(TARGET)}",
    ]


def wrk_env(subject: Subject, max_requests: int = 0) -> dict[str, str]:
    env = {**os.environ, "BENCH_TARGET": TARGET if subject.path == PROXY_ROUTE else ""}
    if subject.auth:
        env["BENCH_AUTH"] = subject.auth
    if max_requests:
        env["BENCH_MAX_REQUESTS"] = str(max_requests)
    return env


def parse_wrk(subject: Subject, stdout: str, stderr: str) -> dict:
    match = re.search(r"^BENCH_RESULT (\{.*\})$", stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk gave no result for {subject.name}:\n{stdout}\n{stderr}")
    result = json.loads(match[1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def run_wrk(subject: Subject, connections: int, seconds: float) -> dict:
    before = cpu_seconds(subject.pids())
    out = subprocess.run(
        wrk_argv(subject, connections, seconds), capture_output=True, text=True,
        env=wrk_env(subject), timeout=seconds + 60,
    )
    cpu = cpu_seconds(subject.pids()) - before
    result = parse_wrk(subject, out.stdout, out.stderr)
    result["cpu_us_per_request"] = cpu * 1e6 / result["requests"] if subject.started else None
    return result


def verify(subject: Subject) -> None:
    """One real call first: a proxy that does not forward must not be timed."""
    conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=10)
    conn.request("POST", subject.url_path(TARGET), body=PROBE_BODY,
                 headers=subject.headers(TARGET))
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    conn.close()
    if resp.status != 200 or json.loads(body) != json.loads(FAL_ANSWER):
        raise RuntimeError(
            f"{subject.name} does not forward: {resp.status} {body[:200]!r} "
            "(the upstream answers 200 only to 'Authorization: Key <bench key>')"
        )


def sse_probe(subject: Subject, events: int, interval: float) -> dict:
    target = f"https://fal.run/bench/sse?n={events}"
    conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=10)
    headers = subject.headers(target)
    headers["Accept"] = "text/event-stream"
    conn.request("GET", subject.url_path(target), headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{subject.name}: event stream answered {resp.status}")
    delays = []
    while True:
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            received = time.time()
            delays.append((received - json.loads(line[6:])["sent"]) * 1000)
    conn.close()
    return {
        "events": len(delays),
        "expected": events,
        "median_ms": statistics.median(delays) if delays else None,
        "max_ms": max(delays) if delays else None,
    }


def keepalive_probe(
    subject: Subject, upstream: Upstream, requests: int, since: tuple[int, int]
) -> dict:
    """Count the upstream connections a fixed number of proxied calls open.

    Counted from ``since``, nginx's counters before the proxy started, so
    the connections its first (verifying) call opened count too. wrk's
    script stops sending after ``requests`` answers, but wrk itself waits out
    its duration; nginx's request counter says when the calls are done, and
    SIGINT makes wrk report at once.
    """
    accepts0, _ = since
    _, requests0 = upstream.counters()
    proc = subprocess.Popen(
        wrk_argv(subject, 64, 120), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=wrk_env(subject, requests),
    )
    deadline = time.monotonic() + 120
    polls = 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            polls += 1
            if upstream.counters()[1] - requests0 - polls >= requests:
                time.sleep(0.2)
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = parse_wrk(subject, stdout, stderr)
    accepts1, _ = upstream.counters()
    # Status queries after `since`, each on its own connection: the first
    # one above, the polls, and the last one.
    queries = 1 + polls + 1
    return {"requests": result["requests"], "connections": accepts1 - accepts0 - queries,
            "errors": result["errors"]}


def memory_probe(subject: Subject, big_bytes: int, post_bytes: int) -> dict:
    workers = subject.workers()

    def measure(call: Callable[[], None]) -> float:
        baseline = {}
        for pid in workers:
            reset_peak_rss(pid)
            baseline[pid] = status_kib(pid, "VmRSS")
        call()
        return max(status_kib(pid, "VmHWM") - baseline[pid] for pid in workers) / 1024

    def download() -> None:
        target = "https://fal.run/bench/big"
        conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=30)
        conn.request("GET", subject.url_path(target), headers=subject.headers(target))
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{subject.name}: large download answered {resp.status}")
        buf = bytearray(MIB)
        got = 0
        start = time.monotonic()
        while n := resp.readinto(buf):
            got += n
        state["seconds"] = time.monotonic() - start
        conn.close()
        if got != big_bytes:
            raise RuntimeError(f"{subject.name}: large download got {got} of {big_bytes} bytes")

    def upload() -> None:
        body = b'{"data":"' + b"a" * (post_bytes - 11) + b'"}'
        conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=60)
        conn.request("POST", subject.url_path(TARGET), body=body, headers=subject.headers(TARGET))
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{subject.name}: large upload answered {resp.status}")

    state: dict[str, float] = {}
    grew_download = measure(download)
    grew_upload = measure(upload)
    return {
        "download_mib": big_bytes / MIB,
        "download_growth_mib": grew_download,
        "download_mib_per_s": big_bytes / MIB / state["seconds"],
        "upload_mib": post_bytes / MIB,
        "upload_growth_mib": grew_upload,
    }


def gunicorn_subject(name: str, port: int, upstream_port: int, args: list[str],
                     threads: int | None, config: Path | None = None,
                     extra_env: dict[str, str] | None = None) -> Subject:
    argv = [str(VENV_BIN / "gunicorn")]
    if config is not None:
        argv += ["-c", str(config)]
    argv += [*args, "--bind", f"127.0.0.1:{port}", "--pythonpath", str(BENCH), "proxy_app:app"]
    env = {"BENCH_UPSTREAM_PORT": str(upstream_port), "BENCH_FAL_KEY": FAL_KEY,
           **(extra_env or {})}
    return Subject(name, port, PROXY_ROUTE, None, argv, env, threads)


def node_subject(name: str, port: int, upstream_port: int, workers: int) -> Subject:
    node_dir = BENCH / "node"
    argv = ["node", "--require", str(node_dir / "loopback-fetch.js"), str(node_dir / "server.js")]
    env = {
        "PORT": str(port),
        "FAL_KEY": FAL_KEY,
        "BENCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}",
        "BENCH_NODE_WORKERS": str(workers),
        "NODE_ENV": "production",
    }
    return Subject(name, port, PROXY_ROUTE, None, argv, env, None)


ALL_SUBJECTS = (
    "upstream,node,node-cluster,gevent,gthread,gthread-accesslog,gthread-2x-workers,sync"
)
LONG_CASES = "2x512,2x2000,2x5000,30x512,30x2000,30x5000"


def subject_catalogue(up: int) -> dict[str, Callable[[], Subject]]:
    """Every way of answering the browser the harness knows, in report order.

    The gunicorn variants run one process per core, as the recommended
    configuration does, so each differs from it in one respect only.
    """
    cores = os.cpu_count() or 1
    conf = ROOT / "example_app" / "gunicorn.conf.py"
    threads = 16
    gthread = {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_CALLS_PER_WORKER": str(threads)}
    catalogue = {
        "upstream": lambda: Subject("upstream alone (nginx)", up, "/", f"Key {FAL_KEY}"),
        "node": lambda: node_subject("node @fal-ai/server-proxy", free_port(), up, 1),
        "node-cluster": lambda: node_subject(
            f"node @fal-ai/server-proxy, cluster x{cores}", free_port(), up, cores
        ),
        "gthread": lambda: gunicorn_subject(
            f"flask-fal-proxy gthread {cores}x{threads} (GUNICORN_WORKER_CLASS=gthread)",
            free_port(), up, [], cores * threads, conf, gthread,
        ),
        "gthread-accesslog": lambda: gunicorn_subject(
            f"flask-fal-proxy gthread {cores}x{threads} + access log", free_port(), up,
            ["--access-logfile", "-"], cores * threads, conf, gthread,
        ),
        "gthread-2x-workers": lambda: gunicorn_subject(
            f"flask-fal-proxy gthread {2 * cores}x{threads // 2}", free_port(), up,
            ["-w", str(2 * cores), "--threads", str(threads // 2)], cores * threads, conf,
            gthread,
        ),
        "sync": lambda: gunicorn_subject(
            f"flask-fal-proxy sync x{cores}", free_port(), up, ["-w", str(cores)], cores,
        ),
        "gevent": lambda: gunicorn_subject(
            f"flask-fal-proxy gevent x{cores} (recommended)", free_port(), up,
            [], None, conf, {"GUNICORN_WORKER_CLASS": "gevent"},
        ),
        "gevent-pywsgi": lambda: gunicorn_subject(
            f"flask-fal-proxy gevent_pywsgi x{cores} (gevent's own HTTP server)", free_port(),
            up, [], None, conf,
            {"GUNICORN_WORKER_CLASS": "gevent_pywsgi", "GUNICORN_CALLS_PER_WORKER": "5000"},
        ),
    }
    return catalogue


def subjects(upstream: Upstream, which: set[str]) -> list[Subject]:
    """The subjects named in ``which``, in report order, answering from ``upstream``."""
    catalogue = subject_catalogue(upstream.port)
    unknown = which - set(catalogue)
    if unknown:
        raise SystemExit(f"unknown subjects: {', '.join(sorted(unknown))}")
    return [make() for key, make in catalogue.items() if key in which]


def fmt_ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def ratio(value: float | None, ref: float | None) -> str:
    if value is None or not ref:
        return "-"
    return f"{value / ref:.2f}x"


def print_report(results: dict[str, Any], out: Any = sys.stdout) -> None:
    w = out.write
    rows = results["subjects"]
    ref = rows.get("node @fal-ai/server-proxy", {})
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
        longcalls.print_report(results["long"], out)
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


def evaluate(results: dict[str, Any], ours: str, keepalive_requests: int) -> list[dict]:
    rows = results["subjects"]
    node, up, r = (rows.get(k, {}) for k in
                   ("node @fal-ai/server-proxy", "upstream alone (nginx)", ours))
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


def main() -> int:
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
    args = parser.parse_args()
    # A SIGTERM (from timeout, say) unwinds like Ctrl-C, so every process
    # started so far is stopped by the finally clauses below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    seconds = args.seconds or (2.0 if args.quick else 10.0)
    warmup = 1.0 if args.quick else 3.0
    keepalive_requests = 1000 if args.quick else 10000
    sse_events = 5 if args.quick else 20
    big = (64 if args.quick else 512) * MIB
    post = (4 if args.quick else 30) * MIB
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
        "seconds": seconds,
        "subjects": {},
    }
    try:
        upstream.start(big)
        for subject in subjects(upstream, which):
            if subject.name.endswith("(recommended)"):
                ours = subject.name
            print(f"== {subject.name}", flush=True)
            since = upstream.counters()
            if subject.argv:
                subject.started = start(subject.name, subject.argv, subject.port, workdir,
                                        subject.env)
            try:
                row: dict[str, Any] = {"threads": subject.threads}
                verify(subject)
                if subject.started:
                    row["keepalive"] = keepalive_probe(subject, upstream, keepalive_requests, since)
                row["sse"] = sse_probe(subject, sse_events, 0.1)
                run_wrk(subject, 64, warmup)
                row["load"] = {}
                for c in (1, 64):
                    row["load"][str(c)] = run_wrk(subject, c, seconds)
                    print(f"   c={c}: {row['load'][str(c)]['rps']:.0f} req/s", flush=True)
                if subject.started:
                    row["memory"] = memory_probe(subject, big, post)
                results["subjects"][subject.name] = row
            finally:
                if subject.started:
                    subject.started.stop()
        if long_which:
            results["long"] = longcalls.run(workdir, long_which, case_list, stream_count,
                                            20 if not args.quick else 5, stalled,
                                            (os.cpu_count() or 1) * 16)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["targets"] = {
        name: evaluate(results, name, keepalive_requests)
        for name in results["subjects"]
        if name == ours or "GUNICORN_WORKER_CLASS" in name
    }
    if "long" in results:
        long_ours = next((n for n in results["long"]["subjects"] if n.endswith("(recommended)")),
                         "")
        results["targets"].setdefault(long_ours, []).extend(
            longcalls.evaluate(results["long"], long_ours))
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
