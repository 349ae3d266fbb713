"""The proxy as the benchmark runs it: the real blueprint, only the last hop moved.

The session is the package's ``default_session`` with ``https://`` remounted
on a ``LoopbackAdapter``, so every check, header rule and the streaming relay
run as in production and only the TCP destination is the local upstream.
With ``BENCH_USAGE_STORAGE`` set to a storage URI, ``track_usage`` meters
every call too, so the bench can show what metering costs.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.relay import default_session
from flask_fal_proxy.testing import LoopbackAdapter

BENCH_ENDPOINTS = ("fal-ai/fast-sdxl", "bench/big", "bench/sse", "bench/hold")


def create_app() -> Flask:
    # As in production: the pool follows the calls a worker holds
    # (FAL_PROXY_POOL_MAXSIZE, set by gunicorn.conf.py), unless a run overrides it.
    pool = int(os.environ.get("BENCH_POOL_SIZE") or os.environ.get("FAL_PROXY_POOL_MAXSIZE", "64"))
    session = default_session(pool_maxsize=pool)
    session.mount(
        "https://",
        LoopbackAdapter(
            int(os.environ["BENCH_UPSTREAM_PORT"]),
            pool_connections=1,
            pool_maxsize=pool,
            max_retries=0,
        ),
    )
    app = Flask(__name__)
    app.config["FAL_KEY"] = os.environ["BENCH_FAL_KEY"]
    blueprint = create_blueprint(session=session, allowed_endpoints=["fal-ai/**", "bench/**"])
    if os.environ.get("BENCH_CHUNK_SIZE"):
        blueprint.fal_proxy_relay.chunk_size = int(os.environ["BENCH_CHUNK_SIZE"])
    app.register_blueprint(blueprint)
    if os.environ.get("BENCH_USAGE_STORAGE"):
        track(app, os.environ["BENCH_USAGE_STORAGE"])
    return app


def track(app: Flask, storage_uri: str) -> None:
    """Usage tracking as a deployer would switch it on, at a cost the bench can isolate.

    One total budget the run never reaches, so every call is estimated,
    reserved and settled and none is refused; fixed prices for the bench's
    endpoints, so nothing asks fal's pricing API; no routes, so only the
    per-call work is measured.
    """
    from flask_fal_proxy.usage import Budget, track_usage

    track_usage(
        app,
        identify=lambda request: None,
        budgets=[Budget(usd=1_000_000, per="day", scope="total")],
        prices={endpoint: 0.01 for endpoint in BENCH_ENDPOINTS},
        storage_uri=storage_uri,
        metrics_route=None,
        usage_route=None,
    )


app = create_app()
