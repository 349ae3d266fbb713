"""The app gunicorn serves in the live Prometheus test: metered calls and the metrics route.

Loaded in each worker process by gunicorn ("metrics_app:create_app()"), so
everything comes from the environment. ``POST /call/<endpoint>`` plays one
call through the app's observers as the admission core does (admitted, or
refused with ``?refuse=<code>``); every answer names the worker that served it.
"""

from __future__ import annotations

import os
import time

import flask

from flask_fal_proxy.admission import Call, add_observer, observers
from flask_fal_proxy.usage.metrics import MetricsObserver, metrics_response


def create_app() -> flask.Flask:
    app = flask.Flask("metrics-under-test")
    add_observer(app, MetricsObserver())

    @app.post("/call/<path:endpoint>")
    def call(endpoint: str) -> flask.Response:
        record = Call(face="fal_proxy", upstream="fal", method="POST", endpoint=endpoint)
        refusal = flask.request.args.get("refuse")
        if refusal:
            record.status, record.refusal = 403, refusal
        else:
            for observer in observers(app):
                observer.admit(record, flask.request)
            record.status = 200
            record.notes.update(cost_usd=0.01, estimated=False)
        record.finished = time.monotonic()
        for observer in observers(app):
            observer.finish(record)
        return flask.jsonify(status=record.status)

    app.add_url_rule("/metrics", "metrics", metrics_response)

    @app.after_request
    def name_the_worker(response: flask.Response) -> flask.Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    return app
