"""Metric writes gathered per process (flask_fal_proxy.usage.batch), read back as a scrape would.

Calls add to a batch and the batch is written once a second, at a scrape of
its own process and at exit; what a scrape shows must be what direct writes
would have shown, and a forked worker must not write its parent's calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flask_fal_proxy.usage.batch import FLUSH_SECONDS, WriteBatch
from flask_fal_proxy.usage.metrics import DURATION_BUCKETS

ROOT = Path(__file__).resolve().parents[2]


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_batched_histogram_shows_what_observe_would_have() -> None:
    """Bucket edges, values past the last bucket and the sum, as Histogram.observe files them."""
    durations = [0.0, 0.05, 0.0500001, 0.1, 0.3, 7.0, 600.0, 600.5, 1e9, 0.05]
    direct, batched = CollectorRegistry(), CollectorRegistry()
    batch = WriteBatch()
    batched.register(batch)
    expected = Histogram("d", "d", ("face",), buckets=DURATION_BUCKETS, registry=direct)
    seen = Histogram("d", "d", ("face",), buckets=DURATION_BUCKETS, registry=batched)
    for amount in durations:
        expected.labels("fal_proxy").observe(amount)
        batch.record((), histogram=seen.labels("fal_proxy"), seconds=amount)

    assert samples(batched) == samples(direct)
    assert samples(batched)[("d_bucket", "0.05")] == 3
    assert samples(batched)[("d_bucket", "+Inf")] == len(durations)


def run_script(script: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def multiprocess_env(directory: Path) -> dict[str, str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    env.pop("prometheus_multiproc_dir", None)
    return env


def read_directory(directory: Path) -> dict[tuple[str, str], float]:
    """What a scrape in another process would read from the workers' files."""
    script = """
        import json, sys
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector
        from prometheus_client.parser import text_string_to_metric_families
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        text = generate_latest(registry).decode()
        out = [[s.name, s.labels.get("face", ""), s.value]
               for f in text_string_to_metric_families(text) for s in f.samples
               if s.name in ("flask_fal_proxy_calls_total", "flask_fal_proxy_calls_in_flight")]
        print(json.dumps(out))
    """
    proc = run_script(script, multiprocess_env(directory))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err

    found: dict[tuple[str, str], float] = {}
    for name, face, value in json.loads(out):
        found[(name, face)] = found.get((name, face), 0.0) + value
    return found


CALLS_THEN_WAIT = """
    import sys, time
    from flask_fal_proxy.admission import Call
    from flask_fal_proxy.usage.metrics import MetricsObserver
    metrics = MetricsObserver()
    for _ in range(3):
        call = Call(face="fal_proxy", upstream="fal", method="POST", endpoint="fal-ai/flux/dev")
        metrics.admit(call, None)
        call.status, call.finished = 200, time.monotonic()
        metrics.finish(call)
    held = Call(face="fal_proxy", upstream="fal", method="POST", endpoint="fal-ai/flux/dev")
    metrics.admit(held, None)
    print("called", flush=True)
    sys.stdin.read()
"""


def test_a_busy_workers_calls_reach_another_workers_scrape_within_a_second(
    tmp_path: Path,
) -> None:
    """Nothing scrapes the worker and it does not exit: its flusher writes the values."""
    worker = run_script(CALLS_THEN_WAIT, multiprocess_env(tmp_path))
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "called"
        started = time.monotonic()
        deadline = started + FLUSH_SECONDS + 5
        seen: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline:
            seen = read_directory(tmp_path)
            if seen.get(("flask_fal_proxy_calls_total", "fal_proxy")) == 3:
                break
            time.sleep(0.1)
        assert seen.get(("flask_fal_proxy_calls_total", "fal_proxy")) == 3
        assert seen.get(("flask_fal_proxy_calls_in_flight", "fal_proxy")) == 1
        assert worker.poll() is None
    finally:
        worker.kill()
        worker.communicate(timeout=30)


FORK = """
    import json, os, time
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector
    from flask_fal_proxy.admission import Call
    from flask_fal_proxy.usage import batch
    from flask_fal_proxy.usage.metrics import MetricsObserver

    def calls_in_files():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        text = generate_latest(registry).decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("flask_fal_proxy_calls_total{"))

    batch.FLUSH_SECONDS = 3600  # only the explicit writes below
    metrics = MetricsObserver()
    for _ in range(2):
        call = Call(face="fal_proxy", upstream="fal", method="POST", endpoint="fal-ai/flux/dev")
        call.status, call.finished = 200, time.monotonic()
        metrics.finish(call)
    child = os.fork()
    if child == 0:
        batch.flush_all()
        os._exit(0)
    os.waitpid(child, 0)
    after_child = calls_in_files()
    batch.flush_all()
    print(json.dumps([after_child, calls_in_files()]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_does_not_write_its_parents_calls(tmp_path: Path) -> None:
    """The parent's gathered calls are the parent's to write: written by the child too, twice."""
    proc = run_script(FORK, multiprocess_env(tmp_path))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    after_child, after_parent = json.loads(out)
    assert after_child == 0
    assert after_parent == 2
