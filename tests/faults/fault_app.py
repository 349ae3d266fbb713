"""The proxy as gunicorn loads it in the fault suite, wired to the faulty upstream.

Everything comes from the environment because gunicorn imports this in
another process; the short timeouts keep every fault's wait bounded.
"""

from __future__ import annotations

import logging
import os

import flask

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.relay import default_session
from flask_fal_proxy.testing import LoopbackAdapter


def create_app() -> flask.Flask:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = os.environ
    session = default_session()
    session.mount("https://", LoopbackAdapter(int(env["FAULT_UPSTREAM_PORT"]), max_retries=0))
    for name in ("refused", "blackhole"):
        port = env.get(f"FAULT_{name.upper()}_PORT")
        if port:
            session.mount(f"https://fal.run/{name}/", LoopbackAdapter(int(port), max_retries=0))
    app = flask.Flask("fault-proxy")
    app.config["FAL_KEY"] = env["FAULT_FAL_KEY"]
    app.register_blueprint(
        create_blueprint(
            session=session,
            allowed_endpoints=["fault/**", "refused/**", "blackhole/**"],
            connect_timeout=float(env.get("FAULT_CONNECT_TIMEOUT", "0.5")),
            read_timeout=float(env.get("FAULT_READ_TIMEOUT", "1.0")),
            max_request_body_bytes=int(env.get("FAULT_MAX_BODY", str(4 * 1024 * 1024))),
        )
    )
    return app
