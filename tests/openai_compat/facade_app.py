"""The OpenAI facade as gunicorn loads it in the abandonment tests, wired to a fake fal.

Everything comes from the environment because gunicorn imports this in
another process; the fake fal runs in the test's process so the test can
read what it received.
"""

from __future__ import annotations

import logging
import os

import flask

from flask_fal_proxy.openai_compat import create_openai_blueprint
from flask_fal_proxy.testing import OPENAI_MODELS, loopback_session


def create_app() -> flask.Flask:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    env = os.environ
    app = flask.Flask("facade-under-gunicorn")
    app.register_blueprint(
        create_openai_blueprint(
            models=OPENAI_MODELS,
            access_keys=[env["FACADE_ACCESS_KEY"]],
            fal_keys=[env["FACADE_FAL_KEY"]],
            session=loopback_session(int(env["FACADE_FAL_PORT"])),
            generation_timeout=float(env.get("FACADE_GENERATION_TIMEOUT", "120")),
        )
    )
    return app
