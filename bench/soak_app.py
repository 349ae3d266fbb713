"""The proxy as the soak runs it: production settings, fal replaced by a fast local upstream.

Authentication is required and the allow-list is narrow, as the README's
production checklist says, so the rejected share of the load exercises the
same refusals a public deployment sees.
"""

from __future__ import annotations

import logging
import os

import flask

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.relay import default_session
from flask_fal_proxy.testing import LoopbackAdapter


def create_app() -> flask.Flask:
    logging.basicConfig(level=logging.WARNING)
    session = default_session()
    session.mount("https://", LoopbackAdapter(int(os.environ["SOAK_UPSTREAM_PORT"]), max_retries=0))
    app = flask.Flask("soak-proxy")
    app.config["FAL_KEY"] = os.environ["SOAK_FAL_KEY"]
    app.register_blueprint(
        create_blueprint(
            session=session,
            allowed_endpoints=["fal-ai/flux/**"],
            allow_unauthorized_requests=False,
            allowed_origins=["https://app.example.com"],
            connect_timeout=2.0,
            read_timeout=10.0,
        )
    )
    return app
