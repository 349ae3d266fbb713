"""The metrics observer on the real admission path: the fal route against FakeFal.

Calls go through the fal face as a browser sends them; the counts are read
back from the exposition, so what the core reports (status, refusal, the
last byte) is what a scrape shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import flask
import pytest
import test_metrics
from conftest import PROXY, TEST_KEY, target
from prometheus_client import CollectorRegistry
from test_metrics import Samples, label_values, scrape, total, value

from flask_fal_proxy.admission import Call, add_observer
from flask_fal_proxy.openai_compat import create_openai_blueprint, jobs
from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.testing import OPENAI_MODELS, FakeAnthropic, FakeFal
from flask_fal_proxy.usage.metrics import MetricsObserver

FLUX = "https://fal.run/fal-ai/flux/dev"
ANTHROPIC_KEY = "sk-ant-metrics-5ecret"

# The same fixture and refusing observer as the unit tests.
registry = test_metrics.registry
SpentBudget = test_metrics.Budget


@pytest.fixture
def metered(
    make_app: Callable[..., flask.Flask], registry: CollectorRegistry
) -> Callable[..., flask.testing.FlaskClient]:
    def factory(*before: object, **overrides: object) -> flask.testing.FlaskClient:
        app = make_app(**overrides)
        for observer in before:
            add_observer(app, observer)  # type: ignore[arg-type]
        add_observer(app, MetricsObserver(registry))
        return app.test_client()

    return factory


def send(client: flask.testing.FlaskClient, method: str, **kwargs: object) -> tuple[int, object]:
    """One call read to its end and closed, as a WSGI server does (the close finishes the call)."""
    with client.open(PROXY, method=method, **kwargs) as response:  # type: ignore[arg-type]
        return response.status_code, response.get_json(silent=True)


def test_a_relayed_call_is_in_flight_until_its_last_byte(
    metered: Callable[..., flask.testing.FlaskClient], registry: CollectorRegistry
) -> None:
    client = metered()
    response = client.post(
        PROXY, headers=target("https://fal.run/fal-ai/flux/dev/stream"), json={"prompt": "x"}
    )
    assert response.status_code == 200
    assert value(scrape(registry), "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 1
    body = response.get_data()
    response.close()
    assert body

    samples = scrape(registry)
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 0
    labels = dict(face="fal_proxy", upstream="fal", endpoint="fal-ai/flux/dev/stream", status="200")
    assert value(samples, "flask_fal_proxy_calls_total", **labels) == 1
    duration = dict(face="fal_proxy", upstream="fal")
    assert value(samples, "flask_fal_proxy_call_duration_seconds_count", **duration) == 1


def test_a_queue_job_counts_under_its_app_id_whatever_its_request_id(
    metered: Callable[..., flask.testing.FlaskClient], registry: CollectorRegistry
) -> None:
    client = metered()
    ids = set()
    for _ in range(3):
        queue = target("https://queue.fal.run/fal-ai/flux/dev")
        status, submitted = send(client, "POST", headers=queue, json={"prompt": "x"})
        assert status == 200
        job = submitted["request_id"]  # type: ignore[index]
        ids.add(job)
        status_url = f"https://queue.fal.run/fal-ai/flux/requests/{job}/status"
        assert send(client, "GET", headers=target(status_url))[0] in (200, 202)
    assert len(ids) == 3

    samples = scrape(registry)
    assert label_values(samples, "flask_fal_proxy_calls_total", "endpoint") == {
        "fal-ai/flux/dev",
        "fal-ai/flux",
    }
    assert total(samples, "flask_fal_proxy_calls_total", endpoint="fal-ai/flux") == 3
    assert not any(job in str(key) for key in samples for job in ids)


def test_the_faces_refusals_are_counted_by_code(
    metered: Callable[..., flask.testing.FlaskClient], registry: CollectorRegistry, fake: FakeFal
) -> None:
    client = metered(allowed_endpoints=["fal-ai/flux/*"])
    assert send(client, "POST", headers=target(FLUX), json={})[0] == 200
    for n in range(3):
        assert send(client, "POST", headers=target(f"https://fal.run/junk/{n}"), json={})[0] == 403
    foreign = {**target(FLUX), "Sec-Fetch-Site": "cross-site"}
    assert send(client, "POST", headers=foreign, json={})[0] == 403
    assert send(client, "POST", json={})[0] == 400
    assert len(fake.calls) == 1

    samples = scrape(registry)
    refusals = {
        dict(labels)["code"]: count
        for (name, labels), count in samples.items()
        if name == "flask_fal_proxy_refusals_total"
    }
    assert refusals == {
        "endpoint_not_allowed": 3,
        "cross_origin_refused": 1,
        "missing_target_url": 1,
    }
    assert total(samples, "flask_fal_proxy_calls_total") == 6
    assert total(samples, "flask_fal_proxy_calls_total", status="403") == 4
    # Refused targets never claim an endpoint label.
    assert label_values(samples, "flask_fal_proxy_calls_total", "endpoint") <= {
        "fal-ai/flux/dev",
        "other",
        "none",
    }
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 0


@pytest.mark.parametrize("metrics_first", [False, True])
def test_a_budget_refusal_is_counted_and_leaves_nothing_in_flight(
    make_app: Callable[..., flask.Flask],
    registry: CollectorRegistry,
    fake: FakeFal,
    metrics_first: bool,
) -> None:
    app = make_app()
    chain = [SpentBudget(), MetricsObserver(registry)]
    for observer in reversed(chain) if metrics_first else chain:
        add_observer(app, observer)  # type: ignore[arg-type]
    status, answer = send(app.test_client(), "POST", headers=target(FLUX), json={"prompt": "x"})
    assert status == 402
    assert answer["code"] == "budget_exceeded"  # type: ignore[index]
    assert fake.calls == []

    samples: Samples = scrape(registry)
    assert (
        value(samples, "flask_fal_proxy_refusals_total", face="fal_proxy", code="budget_exceeded")
        == 1
    )
    assert total(samples, "flask_fal_proxy_calls_total", status="402") == 1
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_proxy") == 0
    assert total(samples, "flask_fal_proxy_call_duration_seconds_count") == 0


@pytest.fixture
def facade_fal(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFal]:
    monkeypatch.setattr(jobs, "FIRST_POLL", 0.005)
    with FakeFal(key=TEST_KEY, media_urls=True, stream_delay=0.0) as fake:
        yield fake


def facade_app(fake: FakeFal, *before: object, registry: CollectorRegistry) -> flask.Flask:
    app = flask.Flask("facade-under-test")
    app.register_blueprint(
        create_openai_blueprint(
            models=OPENAI_MODELS,
            access_keys=["client-access-key"],
            fal_keys=[TEST_KEY],
            session=fake.session(),
        )
    )
    for observer in before:
        add_observer(app, observer)  # type: ignore[arg-type]
    add_observer(app, MetricsObserver(registry))
    return app


def generate(app: flask.Flask) -> int:
    with app.test_client().post(
        "/v1/images/generations",
        headers={"Authorization": "Bearer client-access-key"},
        json={"model": "flux-dev", "prompt": "a lighthouse", "n": 2},
    ) as response:
        return response.status_code


def test_the_openai_facade_counts_one_call_per_request_whatever_its_jobs(
    facade_fal: FakeFal, registry: CollectorRegistry
) -> None:
    assert generate(facade_app(facade_fal, registry=registry)) == 200
    assert len([c for c in facade_fal.calls if c.method == "POST"]) >= 1

    samples = scrape(registry)
    labels = dict(face="fal_openai", upstream="fal", endpoint="fal-ai/flux/dev", status="200")
    assert value(samples, "flask_fal_proxy_calls_total", **labels) == 1
    assert total(samples, "flask_fal_proxy_calls_total") == 1
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_openai") == 0
    duration = dict(face="fal_openai", upstream="fal")
    assert value(samples, "flask_fal_proxy_call_duration_seconds_count", **duration) == 1


def test_the_facades_budget_refusal_is_counted(
    facade_fal: FakeFal, registry: CollectorRegistry
) -> None:
    assert generate(facade_app(facade_fal, SpentBudget(), registry=registry)) == 429
    assert not [c for c in facade_fal.calls if c.host == "queue.fal.run"]

    samples = scrape(registry)
    assert (
        value(samples, "flask_fal_proxy_refusals_total", face="fal_openai", code="budget_exceeded")
        == 1
    )
    assert total(samples, "flask_fal_proxy_calls_total", face="fal_openai") == 1
    assert value(samples, "flask_fal_proxy_calls_in_flight", face="fal_openai") == 0


def test_the_status_counted_is_the_one_the_client_got(
    facade_fal: FakeFal, registry: CollectorRegistry
) -> None:
    assert generate(facade_app(facade_fal, SpentBudget(), registry=registry)) == 429
    samples = scrape(registry)
    assert total(samples, "flask_fal_proxy_calls_total", face="fal_openai", status="429") == 1


class TokenNotes:
    """Writes the token note the pricing observer writes, so the real core hands it on."""

    def admit(self, call: Call, request: flask.Request) -> None:
        pass

    def response(self, *args: object) -> None:
        pass

    def chunk(self, call: Call, data: bytes) -> None:
        pass

    def finish(self, call: Call) -> None:
        call.notes["tokens"] = {"model": "claude-test", "input": 11, "output": 7}
        call.notes.update(cost_usd=0.002, estimated=False)


def test_a_provider_call_counts_its_tokens_and_spend(registry: CollectorRegistry) -> None:
    with FakeAnthropic(key=ANTHROPIC_KEY, stream_delay=0.0) as anthropic:
        app = flask.Flask("provider-under-test")
        app.config["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY
        app.register_blueprint(create_provider_blueprint("anthropic", session=anthropic.session()))
        add_observer(app, TokenNotes())  # type: ignore[arg-type]
        add_observer(app, MetricsObserver(registry))
        message = {
            "model": "claude-test",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
        with app.test_client().post(
            "/api/anthropic/v1/messages",
            json=message,
            headers={"anthropic-version": "2023-06-01"},
        ) as response:
            assert response.status_code == 200, response.get_data(as_text=True)

    samples = scrape(registry)
    labels = dict(
        face="anthropic_proxy", upstream="anthropic", endpoint="v1/messages", status="200"
    )
    assert value(samples, "flask_fal_proxy_calls_total", **labels) == 1
    model = dict(upstream="anthropic", model="claude-test")
    assert value(samples, "flask_fal_proxy_tokens_total", kind="input", **model) == 11
    assert value(samples, "flask_fal_proxy_tokens_total", kind="output", **model) == 7
    spend = dict(face="anthropic_proxy", endpoint="v1/messages")
    assert value(samples, "flask_fal_proxy_spend_usd_total", **spend) == pytest.approx(0.002)
