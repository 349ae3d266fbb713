"""Usage through the real faces in-process: the fal route and a provider route.

The views run the admission core: the observers see the call as it is
really sent and relayed, and a budget refusal is rendered by the face.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import flask
import pytest

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.testing import FakeAnthropic, FakeFal
from flask_fal_proxy.usage import Budget, Prices, track_usage

KEY = "usage-faces-5ecret"
IMAGE = "fal-ai/faces-image"


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    with FakeFal(key=KEY, stream_delay=0.0) as fake:
        fake.set_price(IMAGE, 0.02, "image")
        yield fake


def usage_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [
        json.loads(r.getMessage())
        for r in caplog.records
        if r.name == "flask_fal_proxy.usage" and r.levelno == logging.INFO
    ]


def test_the_fal_route_refuses_past_the_budget_with_402(
    fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    fal.calls.clear()
    app = flask.Flask("fal-route-usage")
    app.config["FAL_KEY"] = KEY
    app.register_blueprint(create_blueprint(session=fal.session()))
    track_usage(
        app,
        identify=lambda request: request.headers.get("x-user"),
        budgets=[Budget(0.05, per="day", scope="user")],
    )
    client = app.test_client()
    headers = {
        "x-fal-target-url": f"https://fal.run/{IMAGE}",
        "Authorization": "Bearer page",
        "x-user": "ann",
    }

    answers = []
    for _ in range(2):
        answer = client.post(
            "/api/fal/proxy", json={"prompt": "p", "num_images": 2}, headers=headers
        )
        answer.get_data()
        answer.close()  # as a server does after the last byte: the call finishes
        answers.append(answer)

    assert answers[0].status_code == 200 and answers[1].status_code == 402
    assert answers[1].get_json()["code"] == "budget_exceeded"
    assert answers[1].headers["x-should-retry"] == "false"
    assert "daily budget of $0.05 for this user" in answers[1].get_json()["message"]
    assert len([c for c in fal.calls if c.host == "fal.run"]) == 1
    # The pricing call went through the fal route's own session, with its key.
    (priced,) = fal.pricing_calls
    assert priced.headers["Authorization"] == f"Key {KEY}"
    settled, refused = usage_lines(caplog)
    assert settled["cost_usd"] == 0.04 and settled["units"] == 2 and not settled["estimated"]
    assert settled["bytes_out"] == len(answers[0].get_data()) and settled["request_id"]
    assert refused["status"] == 402 and refused["refusal"] == "budget_exceeded"
    usage = client.get("/api/usage", headers={"x-user": "ann"}).get_json()
    assert usage["budgets"][0]["spent_usd"] == 0.04


def test_a_provider_stream_is_charged_from_its_usage_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with FakeAnthropic(key="anthropic-5ecret", stream_delay=0.0) as fake:
        app = flask.Flask("provider-usage")
        app.config["ANTHROPIC_API_KEY"] = "anthropic-5ecret"
        app.register_blueprint(create_provider_blueprint("anthropic", session=fake.session()))
        track_usage(
            app,
            budgets=[Budget(1, per="month", scope="total")],
            prices=Prices(tokens={"claude-usage": (2.0, 10.0)}),
        )
        answer = app.test_client().post(
            "/api/anthropic/v1/messages",
            json={
                "model": "claude-usage",
                "max_tokens": 30,
                "stream": True,
                "messages": [{"role": "user", "content": "count these words please"}],
            },
            headers={"anthropic-version": "2023-06-01"},
        )
        body = answer.get_data()
        answer.close()
    assert answer.status_code == 200 and b"message_delta" in body
    (record,) = usage_lines(caplog)
    tokens = record["tokens"]
    assert tokens["model"] == "claude-usage" and tokens["input"] > 0 and tokens["output"] > 0
    assert record["cost_usd"] == pytest.approx(
        (tokens["input"] * 2 + tokens["output"] * 10) / 1e6, abs=1e-6
    )
    assert record["face"] == "anthropic_proxy" and record["bytes_out"] == len(body)
    assert "anthropic-5ecret" not in json.dumps(record)
