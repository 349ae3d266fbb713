"""The studio's usage panel in headless chromium, against a stub of ``/api/usage``.

``track_usage(app, usage_route="/api/usage")`` answers the page with the
visitor's budgets and the app's spend per endpoint today. The stub serves the
studio's real template and bundle, the real fal route before a FakeFal, and a
``/api/usage`` whose spend grows by one image's price per generation, so the
page shows what a deployer's visitors would see: the bar and the chart move
after a generation and on the 30 s refresh, and the panel stays hidden, never
asked again, when the app serves no usage route.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from e2e.harness import ARTIFACTS
from support import ServedApp

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.testing import FakeFal
from providers.test_browser_sdk import require_studio_page, run_script

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
ROOT = BROWSER_DIR.parents[2]
MODEL = "fal-ai/flux/schnell"
OTHER = "fal-ai/flux-pro/v1.1-ultra"
PRICE = 0.05  # one image of MODEL
KEY = "usage-stub-fal-key"


def _stub_app(fal: FakeFal, serves_usage: bool) -> tuple[flask.Flask, dict[str, Any]]:
    example = ROOT / "example_app"
    app = flask.Flask(
        "usage-stub",
        template_folder=str(example / "templates"),
        static_folder=str(example / "static"),
    )
    app.config["FAL_KEY"] = fal.key
    app.register_blueprint(
        create_blueprint(session=fal.session(), allowed_endpoints=[f"{MODEL}/**"])
    )
    state: dict[str, Any] = {"generations": 0, "extra": 0.0, "asked": 0}

    @app.get("/")
    def index() -> str:
        return flask.render_template("index.html", model=MODEL, text_model="m", voice="v")

    @app.before_request
    def count() -> None:
        if flask.request.path == "/api/usage":
            state["asked"] += 1

    @app.after_request
    def charge(response: flask.Response) -> flask.Response:
        submitted = flask.request.path == "/api/fal/proxy" and flask.request.method == "POST"
        if submitted and response.status_code == 200:
            state["generations"] += 1
        return response

    @app.post("/__spend")
    def spend() -> tuple[str, int]:
        state["extra"] += 0.5
        return "", 204

    if serves_usage:

        @app.get("/api/usage")
        def usage() -> dict[str, Any]:
            ours = PRICE * (1 + state["generations"])
            other = 0.30 + state["extra"]
            spent = round(ours + other, 2)
            return {
                "user": "visitor-1",
                "budgets": [
                    {
                        "scope": "total",
                        "per": "month",
                        "usd": 200.0,
                        "spent_usd": 12.5,
                        "remaining_usd": 187.5,
                        "resets_at": "2027-01-01T00:00:00Z",
                    },
                    {
                        "scope": "user",
                        "per": "day",
                        "usd": 5.0,
                        "spent_usd": spent,
                        "remaining_usd": round(5.0 - spent, 2),
                        "resets_at": "2026-12-04T00:00:00Z",
                    },
                ],
                "endpoints_today": [
                    {"endpoint": MODEL, "spent_usd": round(ours, 2)},
                    {"endpoint": OTHER, "spent_usd": round(other, 2)},
                ],
            }

    return app, state


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    with FakeFal(key=KEY, stream_delay=0.02) as fake:
        yield fake


def _run_page(url: str, mode: str, *extra: str) -> dict[str, Any]:
    require_studio_page()
    page = run_script("usage.mjs", url, mode, *extra, timeout=120)
    assert page["pageErrors"] == [], page["pageErrors"]
    assert page["imageState"] == "done", page
    return page


def _bar(page: dict[str, Any], endpoint: str) -> dict[str, Any]:
    (bar,) = [b for b in page["bars"] if b["endpoint"] == endpoint]
    return bar


def test_the_bar_and_chart_move_after_a_generation_and_every_30_s(fal: FakeFal) -> None:
    app, state = _stub_app(fal, serves_usage=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-studio-usage.png"
    served = ServedApp(app)
    try:
        page = _run_page(served.url, "served", str(shot))
    finally:
        served.stop()
    load, generated = page["atLoad"], page["afterGeneration"]
    waiting, refreshed = page["before30s"], page["after30s"]
    assert page["firstStatus"] == 200 and not load["hidden"]

    # The visitor's budget (the first of scope "user"), not the app's total.
    assert load["text"] == "$0.35 of $5.00 today"
    assert load["share"] == pytest.approx(0.35 / 5, abs=0.002)
    assert generated["text"] == "$0.40 of $5.00 today"
    assert generated["share"] - load["share"] == pytest.approx(PRICE / 5, abs=0.002)
    assert generated["valueNow"] == "8"

    # The chart: the generated model's bar grew, scaled to the largest spend.
    assert [b["endpoint"] for b in load["bars"]] == [OTHER, MODEL]
    before, after = _bar(load, MODEL), _bar(generated, MODEL)
    assert (before["value"], after["value"]) == ("$0.05", "$0.10")
    assert after["width"] == pytest.approx(2 * before["width"], rel=0.01)
    assert after["shown"] > before["shown"] > 0
    assert _bar(generated, OTHER)["width"] == _bar(load, OTHER)["width"]

    # Nothing new 27 s after load on the page's clock; at 30 s, the new spend.
    assert waiting["refreshes"] == 2 and waiting["text"] == generated["text"]
    assert refreshed["text"] == "$0.90 of $5.00 today"
    assert _bar(refreshed, OTHER)["value"] == "$0.80"
    assert state["generations"] == 1 and state["asked"] == 3


def test_the_panel_stays_hidden_and_unasked_without_a_usage_route(fal: FakeFal) -> None:
    app, state = _stub_app(fal, serves_usage=False)
    served = ServedApp(app)
    try:
        page = _run_page(served.url, "absent")
    finally:
        served.stop()
    assert page["firstStatus"] == 404
    assert page["atEnd"]["hidden"] and page["atEnd"]["refreshes"] == 0
    # Asked once at load; not after the generation, nor on the 30 s refreshes.
    assert state["generations"] == 1 and state["asked"] == 1
