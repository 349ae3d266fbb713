"""The proxy as the benchmark runs it: the real blueprint, only the last hop moved.

The session is the package's ``default_session`` with ``https://`` remounted
on a ``LoopbackAdapter``, so every check, header rule and the streaming relay
run as in production and only the TCP destination is the local upstream.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.relay import default_session
from flask_fal_proxy.testing import LoopbackAdapter


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
    return app


app = create_app()
