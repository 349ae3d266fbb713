"""Our blueprint in the two configurations of ``tests/e2e/ts_proxy_server.mjs``.

Served by gunicorn for the compatibility run; outbound goes to the fake fal
on ``FAL_PROXY_FAKE_PORT``, the key comes from ``FAL_KEY`` as in production.
"""

from __future__ import annotations

import os

from flask import Flask

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.testing import loopback_session


def create_app() -> Flask:
    app = Flask(__name__)
    session = loopback_session(int(os.environ["FAL_PROXY_FAKE_PORT"]))
    app.register_blueprint(create_blueprint(session=session))
    app.register_blueprint(
        create_blueprint(
            session=session,
            name="strict",
            route="/strict/api/fal/proxy",
            allowed_endpoints=["fal-ai/flux/**"],
            allow_unauthorized_requests=False,
            is_authenticated=lambda request: request.headers.get("x-test-user") == "alice",
        )
    )
    return app


app = create_app()
