"""What clients and the log see when the rate limiter's Redis dies or stalls, under gunicorn+gevent.

The example gunicorn.conf.py serves an app with the Anthropic route (over
a FakeAnthropic in this process) and the OpenAI facade's ``/health``, both
limited with ``limit_proxy_routes`` on a real redis-server. A bounded load
loop (``--clients`` threads, each call its own request) runs through five
phases: Redis up, killed, restarted, stalled with SIGSTOP, resumed. For each
phase it prints the statuses, the latency percentiles and what ``/health``
answered, then the log lines the worker wrote about the backend, and any
traceback. Every process is started here and stopped by its PID.

    .venv/bin/python bench/limiter_outage.py [--mode refuse|allow] [--clients 16] [--phase 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANTHROPIC_KEY = "sk-ant-bench-key"
PASSWORD = "bench-redis-password"
MESSAGE = {"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def create_app():  # type: ignore[no-untyped-def]
    """The app gunicorn serves (environment: BENCH_UPSTREAM_PORT, BENCH_REDIS_URL, BENCH_MODE)."""
    import flask

    from flask_fal_proxy.openai_compat import create_openai_blueprint
    from flask_fal_proxy.providers import create_provider_blueprint
    from flask_fal_proxy.rate_limits import limit_proxy_routes
    from flask_fal_proxy.relay import default_session
    from flask_fal_proxy.testing import loopback_session

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = flask.Flask("limiter-outage")
    app.config["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY
    upstream = loopback_session(int(os.environ["BENCH_UPSTREAM_PORT"]), "127.0.0.1")
    app.register_blueprint(create_provider_blueprint("anthropic", session=upstream))
    app.register_blueprint(
        create_openai_blueprint(
            models="flux-dev:fal-ai/flux/dev",
            access_keys=["bench-client"],
            fal_keys=["fal-unused"],
            session=default_session(),
        )
    )
    limit_proxy_routes(
        app,
        {"anthropic_proxy": "1000000/minute", "fal_openai": "1000000/minute"},
        storage_uri=os.environ["BENCH_REDIS_URL"],
        on_backend_error=os.environ.get("BENCH_MODE", "refuse"),  # type: ignore[arg-type]
    )
    return app


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(port: int, workdir: str) -> subprocess.Popen[bytes]:
    import redis

    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            *("--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"),
            *("--dir", workdir, "--requirepass", PASSWORD),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=1)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Load:
    """``clients`` threads calling the route in a loop; results are tagged with the phase."""

    def __init__(self, base: str, clients: int) -> None:
        self.base = base
        self.phase = "up"
        self.results: list[tuple[str, int, float]] = []
        self.health: list[tuple[str, int, float]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(clients)]
        self._threads.append(threading.Thread(target=self._probe, daemon=True))

    def _call(self) -> None:
        import requests

        with requests.Session() as session:
            while not self._stop.is_set():
                phase, start = self.phase, time.monotonic()
                try:
                    status = session.post(
                        f"{self.base}/api/anthropic/v1/messages",
                        json=MESSAGE,
                        headers={"anthropic-version": "2023-06-01"},
                        timeout=30,
                    ).status_code
                except requests.RequestException:
                    status = 0
                self.results.append((phase, status, time.monotonic() - start))

    def _probe(self) -> None:
        import requests

        while not self._stop.is_set():
            phase, start = self.phase, time.monotonic()
            try:
                status = requests.get(f"{self.base}/health", timeout=30).status_code
            except requests.RequestException:
                status = 0
            self.health.append((phase, status, time.monotonic() - start))
            time.sleep(0.1)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=35)


def summary(rows: list[tuple[str, int, float]], phase: str) -> dict[str, object]:
    mine = [(status, took) for p, status, took in rows if p == phase]
    if not mine:
        return {"calls": 0}
    times = sorted(took * 1000 for _, took in mine)
    return {
        "calls": len(mine),
        "statuses": dict(Counter(status for status, _ in mine)),
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "max_ms": round(times[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("refuse", "allow"), default="refuse")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--phase", type=float, default=5.0, help="seconds per phase")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from flask_fal_proxy.testing import FakeAnthropic

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    workdir = tempfile.mkdtemp(prefix="limiter-outage-")
    redis_port, app_port = free_port(), free_port()
    redis_url = f"redis://:{PASSWORD}@127.0.0.1:{redis_port}/0"
    log_path = Path(workdir) / "gunicorn.log"
    redis = start_redis(redis_port, workdir)
    fake = FakeAnthropic(key=ANTHROPIC_KEY, stream_delay=0).start()
    env = {
        **os.environ,
        "BENCH_UPSTREAM_PORT": str(fake.port),
        "BENCH_REDIS_URL": redis_url,
        "BENCH_MODE": args.mode,
        "BIND": f"127.0.0.1:{app_port}",
        "WEB_CONCURRENCY": "1",
        "PYTHONPATH": f"{ROOT / 'bench'}{os.pathsep}{ROOT}",
    }
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "-c",
                str(ROOT / "example_app" / "gunicorn.conf.py"),
                "limiter_outage:create_app()",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{app_port}"
    report: dict[str, object] = {"mode": args.mode, "clients": args.clients}
    try:
        import requests

        for _ in range(200):
            try:
                requests.get(f"{base}/health", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.05)
        with Load(base, args.clients) as load:
            time.sleep(args.phase)
            load.phase = "killed"
            redis.kill()
            redis.wait()
            time.sleep(args.phase)
            load.phase = "restarted"
            redis = start_redis(redis_port, workdir)
            time.sleep(args.phase)
            load.phase = "stalled"
            os.kill(redis.pid, signal.SIGSTOP)
            time.sleep(args.phase)
            load.phase = "resumed"
            os.kill(redis.pid, signal.SIGCONT)
            time.sleep(args.phase)
        phases = ("up", "killed", "restarted", "stalled", "resumed")
        report["calls"] = {phase: summary(load.results, phase) for phase in phases}
        report["health"] = {phase: summary(load.health, phase) for phase in phases}
    finally:
        stop(server)
        stop(redis)
        fake.stop()
    text = log_path.read_text(errors="replace")
    lines = text.splitlines()
    report["backend_log_lines"] = [line for line in lines if "rate limit backend" in line]
    report["log_lines_total"] = len(lines)
    report["traceback_lines"] = sum("Traceback" in line for line in lines)
    report["password_in_log"] = PASSWORD in text
    print(json.dumps(report, indent=2))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
