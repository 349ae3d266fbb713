"""The app gunicorn serves in the live Prometheus test: the fal route, metered, and its metrics.

Loaded in each worker process by gunicorn ("metrics_app:create_app()"), so
everything comes from the environment: the fal route sends to the test's
FakeFal through a loopback session, and the metrics observer is registered
on the app as ``track_usage`` does. Every answer names the worker that
served it, so the test can tell that both workers took calls and scrapes.
"""

from __future__ import annotations

import os

import flask

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.admission import add_observer
from flask_fal_proxy.testing import loopback_session
from flask_fal_proxy.usage.metrics import MetricsObserver, metrics_response


def create_app() -> flask.Flask:
    app = flask.Flask("metrics-under-test")
    app.config["FAL_KEY"] = os.environ["METRICS_TEST_FAL_KEY"]
    session = loopback_session(int(os.environ["METRICS_TEST_FAL_PORT"]))
    app.register_blueprint(
        create_blueprint(
            session=session,
            allowed_endpoints=["fal-ai/flux/*"],
            allow_unauthorized_requests=True,
        )
    )
    add_observer(app, MetricsObserver())
    app.add_url_rule("/metrics", "metrics", metrics_response)

    @app.after_request
    def name_the_worker(response: flask.Response) -> flask.Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    return app
