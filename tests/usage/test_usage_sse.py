"""Metering a stream does not hold it: the SSE delay bar is the same with ``track_usage``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flask
from providers.sse_delay import measure

from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.testing import FakeAnthropic
from flask_fal_proxy.usage import Budget, Prices, track_usage


def test_sse_events_are_relayed_without_buffering_while_metered(
    serve_app: Callable[..., Any],
) -> None:
    with FakeAnthropic(key="delay-key", stream_delay=0.02) as fake:
        app = flask.Flask("sse-delay-metered")
        app.register_blueprint(
            create_provider_blueprint("anthropic", api_key=fake.key, session=fake.session())
        )
        tracker = track_usage(
            app,
            budgets=[Budget(100, per="day", scope="total")],
            prices=Prices(tokens={"claude-test": (3.0, 15.0)}),
        )
        served = serve_app(app)
        proxied, direct = measure(fake, served.server.server_port, streams=4)
    # The same bounds as the unmetered route's test (tests/providers/test_sse_delay.py).
    assert proxied.median_ms < 25, (str(proxied), str(direct))
    assert proxied.max_ms < 120, (str(proxied), str(direct))
    assert tracker.report(None)["budgets"][0]["spent_usd"] > 0
