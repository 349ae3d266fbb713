"""The Anthropic route relays each event as it comes: a bounded delay, never a buffer.

The bounds are loose (the machine is shared and the server is werkzeug's);
what they catch is buffering, which delays events by the whole stream's
length. ``python tests/providers/sse_delay.py`` prints the figures.
"""

from __future__ import annotations

import flask

from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.testing import FakeAnthropic
from providers.sse_delay import measure


def test_sse_events_are_relayed_without_buffering(serve):
    with FakeAnthropic(key="delay-key", stream_delay=0.02) as fake:
        app = flask.Flask("sse-delay")
        app.register_blueprint(
            create_provider_blueprint("anthropic", api_key=fake.key, session=fake.session())
        )
        served = serve(app)
        proxied, direct = measure(fake, served.server.server_port, streams=4)
    # A buffering proxy would hold the first event for the whole stream (>150 ms).
    assert proxied.median_ms < 25, (str(proxied), str(direct))
    assert proxied.max_ms < 120, (str(proxied), str(direct))
