"""A real Prometheus scrapes the app under gunicorn with two workers and counts every call.

Each worker counts its own calls; a scrape reaches one worker at a time. Only
with the multiprocess set-up of example_app/gunicorn.conf.py does every scrape
show the sum, which is what Prometheus must then hold: exactly the calls made.
Prometheus is Debian's package (scripts/bootstrap.sh installs it), with its
own configuration and storage in a temporary directory, on 127.0.0.1, and
stopped by its PID.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import PROXY, TEST_KEY, target
from e2e.harness import Server, clean_env, gunicorn_argv, gunicorn_env, require
from prometheus_client.parser import text_string_to_metric_families
from support import wait_for_start

from flask_fal_proxy.testing import FakeFal
from flask_fal_proxy.testing.processes import stop_process
from flask_fal_proxy.usage.batch import FLUSH_SECONDS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CALLS = 32
REFUSALS = 4
FLUX = "https://fal.run/fal-ai/flux/dev"


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return listener.getsockname()[1]


class Prometheus:
    """Debian's prometheus scraping ``target`` every second."""

    def __init__(self, target: str, workdir: Path) -> None:
        binary = shutil.which("prometheus")
        require(binary is not None, "prometheus is not installed (Debian package prometheus)")
        config = workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: proxy\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                binary,  # type: ignore[list-item]
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool | None:
            try:
                return requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200 or None
            except requests.ConnectionError:
                return None

        if wait_for_start(self.proc, ready, timeout=60) is None:
            self.stop()
            raise RuntimeError(f"prometheus did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def query(self, promql: str) -> float | None:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        answer.raise_for_status()
        result = answer.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, promql: str, expected: float, timeout: float = 30.0) -> float | None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = self.query(promql)
            if seen == expected:
                return seen
            time.sleep(0.25)
        return seen

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


STALE = """
import time
from flask_fal_proxy.admission import Call
from flask_fal_proxy.usage.metrics import MetricsObserver
metrics = MetricsObserver()
for _ in range(5):
    call = Call(face="fal_proxy", upstream="fal", method="POST", endpoint="fal-ai/flux/dev")
    call.status, call.finished = 200, time.monotonic()
    metrics.finish(call)
"""


def serve(fake: FakeFal, env: dict[str, str]) -> Server:
    """The fal route and the metrics route under gunicorn, 2 workers, fal on loopback."""
    env = {**env, "METRICS_TEST_FAL_KEY": TEST_KEY, "METRICS_TEST_FAL_PORT": str(fake.port)}
    return Server(
        gunicorn_argv("metrics_app:create_app()", "--pythonpath", str(HERE)),
        gunicorn_env(env, workers=2),
        r"Listening at: http://127\.0\.0\.1:(\d+)",
    )


@pytest.fixture
def served(tmp_path: Path, fake: FakeFal) -> Iterator[Server]:
    """The app, with metrics in a directory where an earlier run left counts."""
    metrics_dir = tmp_path / "multiproc"
    metrics_dir.mkdir()
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    stale = subprocess.run(
        [sys.executable, "-c", STALE], env=env, cwd=ROOT, capture_output=True, timeout=60
    )
    assert stale.returncode == 0, stale.stderr
    assert list(metrics_dir.glob("counter_*.db"))
    server = serve(fake, env)
    try:
        yield server
    finally:
        server.stop()


def call(proxy: str, target_url: str, status: int = 200) -> str:
    """One call on a new connection (so the two workers share them); the worker's PID."""
    response = requests.post(
        proxy,
        json={"prompt": "metered"},
        headers={"Connection": "close", **target(target_url)},
        timeout=10,
    )
    assert response.status_code == status, response.text
    return response.headers["X-Worker-Pid"]


def spread_calls(server: Server, at_least: int) -> int:
    """At least ``at_least`` calls, in concurrent batches until both workers served some.

    Which worker accepts a connection is up to the kernel; a busy machine may
    hand one worker a whole batch, so batches go on (a bounded number).
    """
    made, pids = 0, set()
    proxy = server.url + PROXY
    with ThreadPoolExecutor(8) as pool:
        for _ in range(25):
            pids |= set(pool.map(lambda _: call(proxy, FLUX), range(8)))
            made += 8
            if made >= at_least and len(pids) == 2:
                return made
    raise AssertionError(f"one worker served all {made} calls: {pids}")


def scrape_both_workers(server: Server, expected_total: float) -> None:
    """Scrape until both workers have answered; each answer must hold every worker's calls.

    Each worker writes its values at most FLUSH_SECONDS after its calls (and
    the one scraped writes its own at once), so the scrapes start after that.
    """
    time.sleep(FLUSH_SECONDS + 0.5)
    scraped_by: set[str] = set()
    for _ in range(100):
        response = requests.get(
            f"{server.url}/metrics", headers={"Connection": "close"}, timeout=10
        )
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert exposition_total(response.text) == expected_total
        scraped_by.add(response.headers["X-Worker-Pid"])
        if len(scraped_by) == 2:
            return
    raise AssertionError(f"one worker answered every scrape: {scraped_by}")


def exposition_total(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "flask_fal_proxy_calls":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    return 0.0


def test_prometheus_counts_every_call_made_across_two_gunicorn_workers(
    served: Server, tmp_path: Path, fake: FakeFal
) -> None:
    prometheus = Prometheus(f"127.0.0.1:{served.port}", tmp_path)
    try:
        up = prometheus.wait_for('up{job="proxy"}', 1.0)
        assert up == 1.0, prometheus.output()

        calls = spread_calls(served, CALLS)
        refused = "https://fal.run/fal-ai/other-model"
        for _ in range(REFUSALS):
            call(served.url + PROXY, refused, status=403)
        assert len(fake.calls) == calls
        made = calls + REFUSALS
        # Every worker answers a scrape with the sum of both, never only its share.
        scrape_both_workers(served, made)

        total = prometheus.wait_for("sum(flask_fal_proxy_calls_total)", made)
        assert total == made, prometheus.output()
        # The same on the following scrapes, whichever worker answers them.
        time.sleep(3)
        low = prometheus.query("min_over_time(sum(flask_fal_proxy_calls_total)[3s:500ms])")
        high = prometheus.query("max_over_time(sum(flask_fal_proxy_calls_total)[3s:500ms])")
        assert low == high == made
        assert (
            prometheus.query(
                'sum(flask_fal_proxy_refusals_total{face="fal_proxy",code="endpoint_not_allowed"})'
            )
            == REFUSALS
        )
        assert (
            prometheus.query(
                'sum(flask_fal_proxy_calls_total{endpoint="fal-ai/flux/dev",status="200"})'
            )
            == calls
        )
        assert prometheus.query("sum(flask_fal_proxy_call_duration_seconds_count)") == calls
        assert prometheus.query("sum(flask_fal_proxy_calls_in_flight)") == 0
    finally:
        prometheus.stop()


def test_gunicorn_conf_makes_its_own_metrics_directory_and_removes_it(
    tmp_path: Path, fake: FakeFal
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the example configuration still sums the workers."""
    env = clean_env(TMPDIR=str(tmp_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("prometheus_multiproc_dir", None)
    server = serve(fake, env)
    try:
        made = spread_calls(server, 8)
        scrape_both_workers(server, made)
        made_dirs = list(tmp_path.glob("flask-fal-proxy-metrics-*"))
        assert len(made_dirs) == 1 and list(made_dirs[0].glob("*.db"))
    finally:
        server.stop()
    assert not list(tmp_path.glob("flask-fal-proxy-metrics-*"))
