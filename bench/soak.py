"""Soak: the proxy under gunicorn (recommended configuration) and wrk, for a bounded time.

    .venv/bin/python bench/soak.py --duration 300 --connections 64   # the full run
    .venv/bin/python bench/soak.py --duration 20                     # what CI runs

A fast fake fal answers on 127.0.0.1; wrk sends a fixed mix of valid and
rejected calls (bench/soak.lua). While it runs, the RSS and open file
descriptors of every gunicorn worker are sampled. The run passes when wrk
saw no socket error, every status is one the mix expects in about the
expected share, no worker was replaced, and RSS and descriptors of the last
window are level with the first. Prints one JSON summary (and writes it to
``--out``); exits 1 on failure. Everything it starts it stops, by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from flask_fal_proxy.testing.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
KEY = "soak-key-5ecret-never-logged"
# Share of each status in the mix of bench/soak.lua (12 requests per round).
EXPECTED_SHARE = {200: 5, 403: 2, 412: 1, 400: 1, 415: 1, 401: 1, 405: 1}
ROUND = sum(EXPECTED_SHARE.values())
UPSTREAM_BODY = b'{"request_id":"soak","status":"IN_QUEUE","queue_position":0}'
UPSTREAM_REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-fal-request-id: soak\r\n"
    b"Content-Length: " + str(len(UPSTREAM_BODY)).encode() + b"\r\n\r\n" + UPSTREAM_BODY
)


class FastUpstream:
    """A keep-alive HTTP server that answers every request at once, in its own thread."""

    def __init__(self) -> None:
        self.port = 0
        self.requests = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FastUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("upstream did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if match:
                    await reader.readexactly(int(match.group(1)))
                self.requests += 1
                writer.write(UPSTREAM_REPLY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


def _proc_status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def sample(pids: list[int]) -> dict[str, dict[str, int]]:
    out = {}
    for pid in pids:
        try:
            out[str(pid)] = {
                "rss_kib": _proc_status(pid, "VmRSS"),
                "fds": len(os.listdir(f"/proc/{pid}/fd")),
                "threads": _proc_status(pid, "Threads"),
            }
        except (FileNotFoundError, ProcessLookupError, KeyError):
            out[str(pid)] = {"rss_kib": -1, "fds": -1, "threads": -1}
    return out


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    try:
        return sorted(int(p) for p in children.read_text().split())
    except FileNotFoundError:
        return []


def start_gunicorn(
    upstream_port: int, log: Path, workers: int | None
) -> tuple[subprocess.Popen, int]:
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "example_app" / "gunicorn.conf.py"),
        "--bind",
        "127.0.0.1:0",
        "--pythonpath",
        str(ROOT / "bench"),
    ]
    if workers:
        args += ["--workers", str(workers)]
    env = {**os.environ, "SOAK_UPSTREAM_PORT": str(upstream_port), "SOAK_FAL_KEY": KEY}
    handle = open(log, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*args, "soak_app:create_app()"], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        expected = workers or os.cpu_count() or 1
        if match and len(re.findall(r"Booting worker with pid", text)) >= expected:
            time.sleep(0.5)
            return proc, int(match.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop_process(proc, timeout=20)
    raise RuntimeError("gunicorn did not start:\n" + log.read_text(errors="replace"))


def window(samples: list[dict], pid: str, key: str, start: float, end: float) -> float:
    values = [s["workers"][pid][key] for s in samples if start <= s["t"] < end]
    return statistics.median(values) if values else float("nan")


def run(args: argparse.Namespace) -> dict:
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    upstream = FastUpstream().start()
    proc, port = start_gunicorn(upstream.port, workdir / "gunicorn.log", args.workers)
    result: dict = {"duration_s": args.duration, "connections": args.connections}
    try:
        pids = worker_pids(proc.pid)
        time.sleep(0.5)
        idle_before = sample(pids)
        wrk_proc = subprocess.Popen(
            [
                wrk,
                "-t",
                str(args.threads),
                "-c",
                str(args.connections),
                "-d",
                f"{args.duration}s",
                "--timeout",
                "10s",
                "-s",
                str(ROOT / "bench" / "soak.lua"),
                f"http://127.0.0.1:{port}/api/fal/proxy",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started = time.monotonic()
        samples = []
        limit = args.duration + 60
        while wrk_proc.poll() is None and time.monotonic() - started < limit:
            samples.append({"t": round(time.monotonic() - started, 1), "workers": sample(pids)})
            time.sleep(args.sample_every)
        if wrk_proc.poll() is None:
            wrk_proc.kill()
        output = wrk_proc.communicate(timeout=10)[0]
        time.sleep(2)
        idle_after = sample(pids)
        pids_after = worker_pids(proc.pid)
        log_text = (workdir / "gunicorn.log").read_text(errors="replace")
    finally:
        stop_process(proc, timeout=20)
        upstream.stop()

    match = re.search(r"SOAK_RESULT (\{.*\})", output)
    if not match:
        raise SystemExit("wrk gave no result:\n" + output)
    wrk_result = json.loads(match.group(1))
    statuses = {int(k): v for k, v in wrk_result["statuses"].items()}
    total = sum(statuses.values())
    span = args.duration
    edge = min(60.0, span * 0.25)
    workers = {}
    for pid in map(str, pids):
        workers[pid] = {
            "idle_before": idle_before[pid],
            "first_window": {
                k: window(samples, pid, k, 0, edge) for k in ("rss_kib", "fds", "threads")
            },
            "last_window": {
                k: window(samples, pid, k, span - edge, span + 1)
                for k in ("rss_kib", "fds", "threads")
            },
            "idle_after": idle_after[pid],
        }
    failures = []
    if any(wrk_result["errors"][k] for k in ("connect", "read", "write", "timeout")):
        failures.append(f"wrk socket errors: {wrk_result['errors']}")
    unexpected = {s: n for s, n in statuses.items() if s not in EXPECTED_SHARE}
    if unexpected:
        failures.append(f"unexpected statuses: {unexpected}")
    for status, share in EXPECTED_SHARE.items():
        expected = total * share / ROUND
        if abs(statuses.get(status, 0) - expected) > max(0.02 * total, 64):
            failures.append(f"status {status}: {statuses.get(status, 0)}, expected ~{expected:.0f}")
    if pids_after != pids:
        failures.append(f"workers replaced: {pids} -> {pids_after}")
    if KEY in log_text:
        failures.append("the fal key appears in the log")
    for pid, w in workers.items():
        first, last = w["first_window"], w["last_window"]
        rss_growth = last["rss_kib"] - first["rss_kib"]
        if not rss_growth <= max(4096, 0.05 * first["rss_kib"]):
            failures.append(f"worker {pid} RSS grew {rss_growth:.0f} KiB")
        if not last["fds"] <= first["fds"] + 4:
            failures.append(f"worker {pid} fds {first['fds']} -> {last['fds']}")
        # The pool keeps one upstream connection per call that was in flight:
        # at most wrk's connections (gevent), or the threads (gthread).
        pool = args.connections + 4
        if not w["idle_after"]["fds"] <= w["idle_before"]["fds"] + pool:
            failures.append(
                f"worker {pid} idle fds {w['idle_before']['fds']} -> {w['idle_after']['fds']}"
            )
    result.update(
        requests=wrk_result["requests"],
        requests_per_s=round(wrk_result["requests"] / (wrk_result["duration_us"] / 1e6)),
        statuses=dict(sorted(statuses.items())),
        wrk_errors=wrk_result["errors"],
        latency_ms={k[8:-3]: wrk_result[k] for k in wrk_result if k.startswith("latency_")},
        upstream_requests=upstream.requests,
        windows_s=[edge, span],
        workers=workers,
        samples=len(samples),
        failures=failures,
        passed=not failures,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=300, help="seconds of load")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=None, help="default: the config's")
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
