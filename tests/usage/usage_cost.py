"""What tracking costs per call: ``python tests/usage/usage_cost.py [redis://...]``.

Prints the CPU and wall time of the budget observer's four hooks for one
priced, settled ``fal.run`` call (a record line included, to a null
handler), on ``memory://`` and, given a URL, on Redis; then a fal route
call end to end through the test client, without tracking and with it,
interleaved so both see the same load. ``bench/run`` measures the same
under gunicorn, side by side with Node.
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time

import flask

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.admission import Call, add_observer
from flask_fal_proxy.testing import FakeFal
from flask_fal_proxy.usage import Budget, track_usage

BUDGETS = [Budget(1e6, per="day"), Budget(1e7, per="month", scope="total")]
ENDPOINT = "fal-ai/cost"


def hooks(storage_uri: str, calls: int = 3000) -> tuple[float, float]:
    """(CPU, wall) microseconds per call of admit, response, chunk and finish."""
    app = flask.Flask("cost")
    tracker = track_usage(
        app,
        identify=lambda request: "user",
        budgets=BUDGETS,
        prices={ENDPOINT: (0.003, "megapixel")},
        storage_uri=storage_uri,
        metrics_route=None,
    )
    body = json.dumps({"prompt": "a fox", "image_size": "landscape_4_3"}).encode()
    headers = {"x-fal-billable-units": "1", "content-type": "application/json"}
    url = f"https://fal.run/{ENDPOINT}"
    with app.test_request_context("/api/fal/proxy", method="POST"):
        request = flask.request._get_current_object()  # type: ignore[attr-defined]
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            call = Call("fal_proxy", "fal", "POST", endpoint=ENDPOINT, url=url, body=body)
            tracker.admit(call, request)
            tracker.response(call, "POST", url, 200, headers)
            tracker.chunk(call, b"{}" * 200)
            call.status, call.finished = 200, time.monotonic()
            tracker.finish(call)
        return (
            (time.process_time() - cpu) / calls * 1e6,
            (time.perf_counter() - wall) / calls * 1e6,
        )


class _NoOp:
    """An observer that does nothing: what the admission seam itself costs."""

    def admit(self, call: Call, request: flask.Request) -> None: ...

    def response(self, call: Call, method: str, url: str, status: int, headers: object) -> None: ...

    def chunk(self, call: Call, data: bytes) -> None: ...

    def finish(self, call: Call) -> None: ...


def route(storage_uris: list[str | None], rounds: int = 6, calls: int = 300) -> None:
    """Median thread CPU and p50 per call through the fal route, for each storage."""
    with FakeFal(key="cost-key", stream_delay=0) as fal:
        fal.set_price(ENDPOINT, 0.003, "image")
        apps = {}
        for uri in storage_uris:
            app = flask.Flask("cost-route")
            app.config["FAL_KEY"] = fal.key
            app.register_blueprint(create_blueprint(session=fal.session()))
            if uri == "no-op observer":
                add_observer(app, _NoOp())
            elif uri is not None:
                track_usage(
                    app,
                    identify=lambda r: "user",
                    budgets=BUDGETS,
                    storage_uri=uri,
                    metrics_route=None,
                )
            apps[uri or "untracked"] = app.test_client()
        headers = {"x-fal-target-url": f"https://fal.run/{ENDPOINT}", "Authorization": "x"}
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        for round_ in range(rounds):
            for name, client in apps.items():
                cpu, latencies = time.thread_time(), []
                for _ in range(calls):
                    start = time.perf_counter()
                    answer = client.post("/api/fal/proxy", json={"prompt": "p"}, headers=headers)
                    answer.get_data()
                    answer.close()
                    latencies.append(time.perf_counter() - start)
                if round_:  # the first round warms up
                    figures[name].append(
                        ((time.thread_time() - cpu) / calls, statistics.median(latencies))
                    )
        for name, runs in figures.items():
            cpu = statistics.median(c for c, _ in runs) * 1e6
            p50 = statistics.median(p for _, p in runs) * 1e6
            print(f"fal route, {name:>24}: {cpu:6.0f} us CPU per call, p50 {p50:6.0f} us")


def main() -> None:
    logger = logging.getLogger("flask_fal_proxy.usage")
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("flask_fal_proxy").setLevel(logging.ERROR)
    uris = ["memory://", *sys.argv[1:]]
    for uri in uris:
        cpu, wall = hooks(uri)
        print(f"hooks, {uri:>24}: {cpu:6.0f} us CPU per call, {wall:6.0f} us wall")
    route([None, "no-op observer", *uris])


if __name__ == "__main__":
    main()
