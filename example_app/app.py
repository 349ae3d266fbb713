"""A Flask app that lets the browser call fal through flask-fal-proxy.

Copy this file as a starting point. With ``FAL_KEY`` set it talks to the real
fal; without it, an embedded fake fal on 127.0.0.1 answers, so the whole flow
(page -> @fal-ai/client -> proxy -> "fal") runs offline.
"""

from __future__ import annotations

import logging
import os
import secrets

from flask import Flask, render_template, session

from flask_fal_proxy import create_blueprint

MODEL = "fal-ai/flux/schnell"


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY")
    if not app.config["SECRET_KEY"]:
        # Fine for one process; with several workers each would reject the
        # others' session cookies, so set SECRET_KEY in production.
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        app.logger.warning("SECRET_KEY is not set: using a random per-process key")
    app.config["FAL_MODEL"] = os.environ.get("FAL_MODEL", MODEL)
    logging.basicConfig(level=logging.INFO)

    outbound = None
    fake_port = os.environ.get("FAL_PROXY_FAKE_PORT")
    if fake_port:
        # End-to-end tests run the fake fal in their own process, to read what
        # it received, and point this app at it; FAL_KEY is then the fake's key.
        from flask_fal_proxy.testing import loopback_session

        outbound = loopback_session(int(fake_port))
    elif not os.environ.get("FAL_KEY"):
        from flask_fal_proxy.testing import FakeFal

        fake = FakeFal(key="example-offline-key").start()
        app.config["FAL_KEY"] = fake.key
        outbound = fake.session()
        app.logger.warning("FAL_KEY is not set: using the embedded fake fal on %s", fake.base_url)

    app.register_blueprint(
        create_blueprint(
            session=outbound,
            # Only the model this page uses; anything else gets 403.
            allowed_endpoints=[f"{app.config['FAL_MODEL']}/**"],
            # Only browsers that loaded our page (and so hold our session cookie).
            allow_unauthorized_requests=False,
            is_authenticated=lambda request: session.get("visitor") is not None,
        )
    )

    @app.get("/")
    def index() -> str:
        session.setdefault("visitor", secrets.token_hex(8))
        return render_template("index.html", model=app.config["FAL_MODEL"])

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), threaded=True)
