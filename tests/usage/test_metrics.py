"""The Prometheus metrics of flask_fal_proxy.usage.metrics, read back from the exposition.

Every assertion parses what a scrape would get (``metrics_response``), so a
name, a label or a value that Prometheus would not see fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import flask
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from flask_fal_proxy.admission import Call, add_observer
from flask_fal_proxy.errors import ProxyError
from flask_fal_proxy.usage.metrics import (
    MAX_LABEL_VALUES,
    MetricsObserver,
    endpoint_label,
    metrics_response,
)

ROOT = Path(__file__).resolve().parents[2]
JOB = "0f8c1e4e-5a2b-4c3d-8e9f-0123456789ab"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry | None = None) -> Samples:
    response = metrics_response(registry)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "version=0.0.4" in response.content_type
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls), _ in samples.items() if n == name}


def run_call(
    observers: Iterable[MetricsObserver | object],
    call: Call,
    status: int = 200,
    refusal: ProxyError | None = None,
    notes: dict | None = None,
) -> None:
    """What the admission core does with one call, for the observers given.

    A face refusal finishes without ``admit``; an observer refusing in
    ``admit`` stops the others' ``admit`` but every observer's ``finish``
    runs.
    """
    observers = list(observers)
    if refusal is None:
        try:
            for observer in observers:
                observer.admit(call, None)  # type: ignore[attr-defined]
        except ProxyError as error:
            refusal = error
    if refusal is not None:
        call.status, call.refusal = refusal.status, refusal.code
    else:
        call.status = status
        for observer in observers:
            observer.response(call, call.method, call.url or "", status, {})  # type: ignore[attr-defined]
            observer.chunk(call, b"{}")  # type: ignore[attr-defined]
        call.notes.update(notes or {})
    call.finished = time.monotonic()
    for observer in observers:
        observer.finish(call)  # type: ignore[attr-defined]


def fal_call(endpoint: str = "fal-ai/flux/dev", face: str = "fal_proxy") -> Call:
    return Call(face=face, upstream="fal", method="POST", endpoint=endpoint)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of its own per test, so no count carries over."""
    return CollectorRegistry()


class Budget:
    """An observer that refuses every call in admit, as a spent budget does."""

    def admit(self, call: Call, request: object) -> None:
        raise ProxyError(402, "budget_exceeded", "The daily budget is spent.")

    def response(self, *args: object) -> None:
        pass

    def chunk(self, call: Call, data: bytes) -> None:
        pass

    def finish(self, call: Call) -> None:
        pass


@pytest.mark.parametrize(
    ("upstream", "endpoint", "label"),
    [
        ("fal", "fal-ai/flux/dev", "fal-ai/flux/dev"),
        ("fal", f"fal-ai/flux/requests/{JOB}/status", "fal-ai/flux"),
        ("fal", f"fal-ai/flux/requests/{JOB}", "fal-ai/flux"),
        ("fal", f"fal-ai/flux/requests/{JOB}/cancel", "fal-ai/flux"),
        ("fal", f"fal-ai/flux/requests/{JOB}/status/stream", "fal-ai/flux"),
        ("fal", f"/fal-ai/flux-pro/v1.1/requests/{JOB}/", "fal-ai/flux-pro/v1.1"),
        ("fal", "fal-ai/stable-diffusion-v35-large", "fal-ai/stable-diffusion-v35-large"),
        ("fal", "storage/upload/initiate", "storage/upload/initiate"),
        ("openai", f"v1/files/{JOB}/content", "v1/files/{id}/content"),
        ("anthropic", "v1/messages", "v1/messages"),
        ("fal", "", "none"),
        ("fal", "x" * 500, "x" * 120),
    ],
)
def test_endpoint_labels_never_hold_a_request_id(upstream: str, endpoint: str, label: str) -> None:
    assert endpoint_label(upstream, endpoint) == label


def test_a_call_is_counted_with_its_status_duration_and_in_flight(
    registry: CollectorRegistry,
) -> None:
    metrics = MetricsObserver(registry)
    call = fal_call()
    call.started -= 0.3
    metrics.admit(call, None)  # type: ignore[arg-type]
    during = scrape(registry)
    assert value(during, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 1
    call.status = 200
    call.finished = time.monotonic()
    metrics.finish(call)

    after = scrape(registry)
    labels = dict(face="fal_proxy", upstream="fal", endpoint="fal-ai/flux/dev", status="200")
    assert value(after, "flask_fal_proxy_calls_total", **labels) == 1
    assert value(after, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 0
    duration = dict(face="fal_proxy", upstream="fal")
    assert value(after, "flask_fal_proxy_call_duration_seconds_count", **duration) == 1
    assert value(after, "flask_fal_proxy_call_duration_seconds_sum", **duration) >= 0.3
    assert value(after, "flask_fal_proxy_call_duration_seconds_bucket", le="0.25", **duration) == 0
    assert value(after, "flask_fal_proxy_call_duration_seconds_bucket", le="0.5", **duration) == 1


def test_queue_status_polls_count_under_the_app_id(registry: CollectorRegistry) -> None:
    metrics = MetricsObserver(registry)
    for n in range(30):
        job = f"{n:08x}-5a2b-4c3d-8e9f-0123456789ab"
        run_call([metrics], fal_call(f"fal-ai/flux/requests/{job}/status"))
    samples = scrape(registry)
    assert label_values(samples, "flask_fal_proxy_calls_total", "endpoint") == {"fal-ai/flux"}
    assert total(samples, "flask_fal_proxy_calls_total", endpoint="fal-ai/flux") == 30


def test_endpoint_and_model_labels_stay_bounded(registry: CollectorRegistry) -> None:
    metrics = MetricsObserver(registry)
    extra = 50
    for n in range(MAX_LABEL_VALUES + extra):
        call = Call(face="anthropic_proxy", upstream="anthropic", method="POST", endpoint=f"v{n}")
        tokens = {"model": f"model-{n}", "input": 1, "output": 2}
        run_call([metrics], call, notes={"tokens": tokens})
    samples = scrape(registry)

    endpoints = label_values(samples, "flask_fal_proxy_calls_total", "endpoint")
    assert len(endpoints) == MAX_LABEL_VALUES + 1
    assert (
        value(
            samples,
            "flask_fal_proxy_calls_total",
            face="anthropic_proxy",
            upstream="anthropic",
            endpoint="other",
            status="200",
        )
        == extra
    )
    models = label_values(samples, "flask_fal_proxy_tokens_total", "model")
    assert len(models) == MAX_LABEL_VALUES + 1
    other = dict(upstream="anthropic", model="other")
    assert value(samples, "flask_fal_proxy_tokens_total", kind="input", **other) == extra
    assert value(samples, "flask_fal_proxy_tokens_total", kind="output", **other) == 2 * extra
    assert total(samples, "flask_fal_proxy_calls_total") == MAX_LABEL_VALUES + extra


def test_refused_calls_cannot_use_up_the_endpoint_labels(registry: CollectorRegistry) -> None:
    metrics = MetricsObserver(registry)
    run_call([metrics], fal_call("fal-ai/flux/dev"))
    for n in range(MAX_LABEL_VALUES * 2):
        refusal = ProxyError(403, "endpoint_not_allowed", "Not allowed.")
        run_call([metrics], fal_call(f"junk/{n}"), refusal=refusal)
    run_call([metrics], fal_call("fal-ai/flux/schnell"))
    refusal = ProxyError(403, "endpoint_not_allowed", "Not allowed.")
    run_call([metrics], fal_call("fal-ai/flux/dev"), refusal=refusal)

    samples = scrape(registry)
    assert label_values(samples, "flask_fal_proxy_calls_total", "endpoint") == {
        "fal-ai/flux/dev",
        "fal-ai/flux/schnell",
        "other",
    }
    assert total(samples, "flask_fal_proxy_calls_total", endpoint="other", status="403") == 200
    assert total(samples, "flask_fal_proxy_calls_total", endpoint="fal-ai/flux/dev") == 2
    assert (
        value(
            samples, "flask_fal_proxy_refusals_total", face="fal_proxy", code="endpoint_not_allowed"
        )
        == 201
    )


def test_every_refusal_is_counted_budget_exceeded_included(registry: CollectorRegistry) -> None:
    metrics = MetricsObserver(registry)
    run_call([metrics], fal_call(), refusal=ProxyError(403, "origin_not_allowed", "No."))
    # The budget observer runs first: the metrics observer's admit is never reached.
    run_call([Budget(), metrics], fal_call(face="fal_openai"))
    # Registered the other way round, admit ran and the call was in flight.
    run_call([metrics, Budget()], fal_call())

    samples = scrape(registry)
    assert (
        value(
            samples, "flask_fal_proxy_refusals_total", face="fal_proxy", code="origin_not_allowed"
        )
        == 1
    )
    assert (
        value(samples, "flask_fal_proxy_refusals_total", face="fal_openai", code="budget_exceeded")
        == 1
    )
    assert (
        value(samples, "flask_fal_proxy_refusals_total", face="fal_proxy", code="budget_exceeded")
        == 1
    )
    assert total(samples, "flask_fal_proxy_calls_total", status="402") == 2
    assert total(samples, "flask_fal_proxy_calls_total", status="403") == 1
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 0
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_openai") == 0
    # Refusals never went upstream: no duration, no spend.
    assert total(samples, "flask_fal_proxy_call_duration_seconds_count") == 0


def test_spend_is_settled_cost_and_estimates_are_reserved_then_released(
    registry: CollectorRegistry,
) -> None:
    metrics = MetricsObserver(registry)
    # fal.run: settled at once from x-fal-billable-units.
    run_call([metrics], fal_call(), notes={"cost_usd": 0.05, "estimated": False})
    # A queue submit: only an estimate when it ends.
    submit = fal_call("fal-ai/flux/dev")
    run_call([metrics], submit, notes={"cost_usd": 0.1, "estimated": True})
    # Its result, perhaps on another instance, settles it at 0.08.
    result = fal_call(f"fal-ai/flux/requests/{JOB}")
    notes = {
        "cost_usd": 0.08,
        "estimated": False,
        "released_usd": 0.1,
        "cost_endpoint": "fal-ai/flux/dev",
    }
    run_call([metrics], result, notes=notes)
    # Refused calls and nonsense notes spend nothing.
    run_call([Budget(), metrics], fal_call(), notes={"cost_usd": 9.0, "estimated": False})
    run_call([metrics], fal_call(), notes={"cost_usd": -1.0, "estimated": False})
    run_call([metrics], fal_call(), notes={"cost_usd": "1", "estimated": False})
    for nonsense in (float("nan"), float("inf"), True):
        run_call([metrics], fal_call(), notes={"cost_usd": nonsense, "estimated": False})

    samples = scrape(registry)
    where = dict(face="fal_proxy", endpoint="fal-ai/flux/dev")
    assert value(samples, "flask_fal_proxy_spend_usd_total", **where) == pytest.approx(0.13)
    assert value(samples, "flask_fal_proxy_spend_reserved_usd_total", **where) == pytest.approx(0.1)
    assert value(samples, "flask_fal_proxy_spend_released_usd_total", **where) == pytest.approx(0.1)
    assert total(samples, "flask_fal_proxy_spend_usd_total") == pytest.approx(0.13)


def test_tokens_are_counted_by_upstream_model_and_kind(registry: CollectorRegistry) -> None:
    metrics = MetricsObserver(registry)
    for _ in range(2):
        call = Call(face="anthropic_proxy", upstream="anthropic", method="POST")
        call.endpoint = "v1/messages"
        tokens = {"model": "claude-sonnet-4-5", "input": 1200, "output": 300}
        run_call([metrics], call, notes={"tokens": tokens})
    call = Call(face="openai_proxy", upstream="openai", method="POST", endpoint="v1/chat")
    run_call([metrics], call, notes={"tokens": {"model": "gpt-4o", "input": 10, "output": 0}})

    samples = scrape(registry)
    claude = dict(upstream="anthropic", model="claude-sonnet-4-5")
    assert value(samples, "flask_fal_proxy_tokens_total", kind="input", **claude) == 2400
    assert value(samples, "flask_fal_proxy_tokens_total", kind="output", **claude) == 600
    gpt = dict(upstream="openai", model="gpt-4o")
    assert value(samples, "flask_fal_proxy_tokens_total", kind="input", **gpt) == 10
    assert value(samples, "flask_fal_proxy_tokens_total", kind="output", **gpt) == 0


def test_two_apps_in_one_process_share_the_process_metrics() -> None:
    """The default registry, as track_usage uses it: a second app must not register twice."""

    def make_app(name: str) -> flask.Flask:
        app = flask.Flask(name)
        add_observer(app, MetricsObserver())
        app.add_url_rule("/metrics", "metrics", metrics_response)
        return app

    first, second = make_app("first"), make_app("second")
    labels = dict(face="fal_proxy", upstream="fal", endpoint="two-apps/test", status="200")
    before = REGISTRY.get_sample_value("flask_fal_proxy_calls_total", labels) or 0.0
    from flask_fal_proxy.admission import observers

    run_call(observers(first), fal_call("two-apps/test"))
    run_call(observers(second), fal_call("two-apps/test"))

    for app in (first, second):
        response = app.test_client().get("/metrics")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples: Samples = {}
        for family in text_string_to_metric_families(response.get_data(as_text=True)):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        assert value(samples, "flask_fal_proxy_calls_total", **labels) == before + 2


WORKER = textwrap.dedent(
    """
    import sys, time
    from flask_fal_proxy.admission import Call
    from flask_fal_proxy.usage.metrics import MetricsObserver

    calls, hang = int(sys.argv[1]), sys.argv[2] == "hang"
    metrics = MetricsObserver()
    for n in range(calls):
        call = Call(face="fal_proxy", upstream="fal", method="POST", endpoint="fal-ai/flux/dev")
        metrics.admit(call, None)
        call.status = 200
        call.notes.update(cost_usd=0.25, estimated=False)
        call.finished = time.monotonic()
        metrics.finish(call)
    if hang:
        call = Call(face="fal_proxy", upstream="fal", method="POST", endpoint="fal-ai/flux/dev")
        metrics.admit(call, None)
    print("ok", flush=True)
    """
)


def test_multiprocess_mode_sums_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker processes write to one directory; a scrape in a third sees their sum.

    The second worker dies with a call in flight: once it is marked dead (what
    gunicorn.conf.py's child_exit does) the live gauge no longer counts it.
    """
    from prometheus_client import multiprocess

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("prometheus_multiproc_dir", None)
    for calls, hang in ((3, "done"), (4, "hang")):
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(calls), hang],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    samples = scrape()

    labels = dict(face="fal_proxy", upstream="fal", endpoint="fal-ai/flux/dev", status="200")
    assert value(samples, "flask_fal_proxy_calls_total", **labels) == 7
    spend = dict(face="fal_proxy", endpoint="fal-ai/flux/dev")
    assert value(samples, "flask_fal_proxy_spend_usd_total", **spend) == pytest.approx(1.75)
    duration = dict(face="fal_proxy", upstream="fal")
    assert value(samples, "flask_fal_proxy_call_duration_seconds_count", **duration) == 7
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 1

    dead = list(tmp_path.glob("gauge_livesum_*.db"))
    assert len(dead) == 2
    for path in dead:
        multiprocess.mark_process_dead(int(path.stem.rsplit("_", 1)[1]), str(tmp_path))
    samples = scrape()
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 0
    assert value(samples, "flask_fal_proxy_calls_total", **labels) == 7
