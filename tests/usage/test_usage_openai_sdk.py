"""Budgets on the OpenAI images facade, driven by the ``openai`` SDK over real HTTP.

A refusal must be OpenAI's quota error (429 ``insufficient_quota``, not
retried), and concurrent generations must stop exactly where the budget
does: fal sees only the jobs the budget covers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import flask
import openai
import pytest
from openai_compat.openai_support import ACCESS_KEY, Served

from flask_fal_proxy.openai_compat import create_openai_blueprint
from flask_fal_proxy.testing import FakeFal
from flask_fal_proxy.usage import Budget, track_usage

KEY = "usage-sdk-fal-5ecret"
ENDPOINT = "fal-ai/flux/dev"  # $0.025 per megapixel at the fake; 1024x1024 is one


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    with FakeFal(key=KEY, media_urls=True, stream_delay=0.0) as fake:
        yield fake


def test_concurrent_generations_stop_at_the_budget(
    fal: FakeFal, serve_app: Callable[..., Any]
) -> None:
    fal.calls.clear()
    app = flask.Flask("facade-budget")
    app.register_blueprint(
        create_openai_blueprint(
            models={"flux-dev": ENDPOINT},
            access_keys=[ACCESS_KEY],
            fal_keys=[KEY],
            session=fal.session(),
        )
    )
    track_usage(
        app,
        identify=lambda request: "sdk-user",
        budgets=[Budget(0.10, per="day", scope="user")],
        session=fal.session(),
        fal_key=lambda: KEY,
    )
    client = serve_app(app, kind=Served).client()
    outcomes: list[Any] = []
    start = threading.Barrier(8)

    def generate() -> None:
        start.wait()
        try:
            outcomes.append(
                client.images.generate(model="flux-dev", prompt="a fox", size="1024x1024")
            )
        except openai.RateLimitError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=generate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    refused = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    generated = [o for o in outcomes if not isinstance(o, Exception)]
    submits = [c for c in fal.calls if c.host == "queue.fal.run" and c.method == "POST"]
    assert len(generated) == 4 == len(submits) and len(refused) == 4
    assert refused[0].status_code == 429 and refused[0].code == "insufficient_quota"
    assert refused[0].response.headers["x-should-retry"] == "false"
    assert "daily budget of $0.10" in refused[0].message
    usage = app.test_client().get("/api/usage").get_json()
    assert usage["budgets"][0]["spent_usd"] == pytest.approx(0.10)


def test_a_facade_generation_is_settled_from_fals_billable_units(
    fal: FakeFal, serve_app: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    # The estimate is one megapixel; fal bills 3 units: the spend must follow fal.
    fal.calls.clear()
    fal.billable_units[ENDPOINT] = 3
    try:
        app = flask.Flask("facade-settle")
        app.register_blueprint(
            create_openai_blueprint(
                models={"flux-dev": ENDPOINT},
                access_keys=[ACCESS_KEY],
                fal_keys=[KEY],
                session=fal.session(),
            )
        )
        track_usage(app, identify=lambda request: "sdk-user", budgets=[Budget(5, per="day")])
        client = serve_app(app, kind=Served).client()
        client.images.generate(model="flux-dev", prompt="a fox", size="1024x1024")
        usage = app.test_client().get("/api/usage").get_json()
    finally:
        del fal.billable_units[ENDPOINT]
    assert usage["budgets"][0]["spent_usd"] == pytest.approx(3 * 0.025)
    # The prices came through the facade's own session (no session= given).
    assert fal.pricing_calls
