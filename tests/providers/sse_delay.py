"""How much delay the Anthropic route adds to each server-sent event.

The fake, the proxy (a threaded werkzeug server) and the client share one
process and one monotonic clock, so each event's delay is its arrival at the
client minus the moment the fake handed it to its server. The same streams
read straight from the fake give the baseline; the difference is the
proxy's share. Run ``python tests/providers/sse_delay.py`` for the figures
(``--gunicorn``: the example app under gunicorn instead of werkzeug).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from dataclasses import dataclass

from flask_fal_proxy.testing import FakeAnthropic

BODY = json.dumps(
    {
        "model": "claude-test",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "one two three four five six seven"}],
    }
).encode()


@dataclass
class Delays:
    samples: list[float]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.samples) * 1000

    def __str__(self) -> str:
        count = len(self.samples)
        return f"median {self.median_ms:.2f} ms, max {self.max_ms:.2f} ms over {count} events"


def stream_delays(
    fake: FakeAnthropic, port: int, path: str, headers: dict[str, str]
) -> list[float]:
    """Per-event delays of one streamed message read from ``127.0.0.1:port``."""
    fake.event_log.clear()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body=BODY, headers=headers)
        response = connection.getresponse()
        assert response.status == 200, response.read()
        arrivals: list[float] = []
        buffer = b""
        while True:
            chunk = response.read1(65536)
            if not chunk:
                break
            now = time.monotonic()
            buffer += chunk
            while b"\n\n" in buffer:
                _, buffer = buffer.split(b"\n\n", 1)
                arrivals.append(now)
    finally:
        connection.close()
    sent = [t for _, t in fake.event_log]
    assert len(sent) == len(arrivals), (len(sent), len(arrivals))
    return [arrived - left for arrived, left in zip(arrivals, sent, strict=True)]


def measure(
    fake: FakeAnthropic,
    proxy_port: int,
    streams: int = 20,
    proxy_headers: dict[str, str] | None = None,
) -> tuple[Delays, Delays]:
    """(through the proxy, straight from the fake), interleaved so both see the same load."""
    common = {"Content-Type": "application/json", "anthropic-version": "2023-06-01"}
    direct_headers = {**common, "Host": "api.anthropic.com", "x-api-key": fake.key}
    via_proxy = {**common, **(proxy_headers or {})}
    proxied: list[float] = []
    direct: list[float] = []
    for _ in range(streams):
        proxied += stream_delays(fake, proxy_port, "/api/anthropic/v1/messages", via_proxy)
        direct += stream_delays(fake, fake.port, "/v1/messages", direct_headers)
    return Delays(proxied), Delays(direct)


def _werkzeug(fake: FakeAnthropic) -> tuple[Delays, Delays]:
    import flask
    from provider_support import Served

    from flask_fal_proxy.providers import create_provider_blueprint

    app = flask.Flask("sse-delay")
    app.register_blueprint(
        create_provider_blueprint("anthropic", api_key=fake.key, session=fake.session())
    )
    served = Served(app)
    try:
        measure(fake, served.server.server_port, streams=3)  # warm up
        return measure(fake, served.server.server_port, streams=100)
    finally:
        served.stop()


def _gunicorn(fake: FakeAnthropic) -> tuple[Delays, Delays]:
    """The example app under gunicorn with its production settings, one worker."""
    import sys
    from pathlib import Path

    import requests

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from e2e.harness import clean_env, gunicorn

    env = clean_env(
        ANTHROPIC_API_KEY=fake.key, ANTHROPIC_FAKE_PORT=str(fake.port), SECRET_KEY="bench"
    )
    server = gunicorn("example_app.app:app", env)
    try:
        # The example's routes want the session cookie its page sets.
        cookie = requests.get(f"{server.url}/", timeout=10).headers["Set-Cookie"].split(";")[0]
        headers = {"Cookie": cookie}
        measure(fake, server.port, streams=3, proxy_headers=headers)
        return measure(fake, server.port, streams=100, proxy_headers=headers)
    finally:
        server.stop()


def main() -> None:
    import sys

    under = "gunicorn" if "--gunicorn" in sys.argv else "werkzeug"
    with FakeAnthropic(key="bench-key", stream_delay=0.005) as fake:
        proxied, direct = _gunicorn(fake) if under == "gunicorn" else _werkzeug(fake)
    added = statistics.median(proxied.samples) - statistics.median(direct.samples)
    print(f"through the proxy ({under}): {proxied}")
    print(f"straight from the fake: {direct}")
    print(f"added by the proxy (difference of medians): {added * 1000:.2f} ms")


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    main()
