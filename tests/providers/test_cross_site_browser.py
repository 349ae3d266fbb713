"""Chromium on a foreign page cannot spend a key: the cross-origin rule, end to end.

CORS decides what a page may read, not what reaches the server: a
``no-cors`` fetch with a multipart, ``text/plain`` or urlencoded body and a
plain form submit need no preflight. Each of them must be refused before
anything reaches a provider, while a trusted page keeps working (the SDK
and studio browser tests cover that side).
"""

from __future__ import annotations

import json
import os

import flask
import pytest
from e2e.harness import CHROMIUM, require

from flask_fal_proxy.providers import create_provider_blueprint
from providers.provider_support import ANTHROPIC_KEY, ELEVENLABS_KEY, Served
from providers.test_browser_sdk import BROWSER_DIR, run_script

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def _app(anthropic, elevenlabs, seen: list) -> flask.Flask:
    app = flask.Flask("cross-site")
    app.config["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY
    app.config["ELEVENLABS_API_KEY"] = ELEVENLABS_KEY
    app.register_blueprint(create_provider_blueprint("anthropic", session=anthropic.session()))
    app.register_blueprint(create_provider_blueprint("elevenlabs", session=elevenlabs.session()))

    @app.after_request
    def record(response: flask.Response) -> flask.Response:
        request = flask.request
        seen.append((request.path, request.headers.get("Sec-Fetch-Site"), response.status_code))
        return response

    @app.get("/page")
    def page() -> str:
        return "<!doctype html><title>page</title><p>page</p>"

    return app


def _run(page_url: str, proxy: str) -> dict:
    return run_script("foreign.mjs", page_url, proxy)


def test_a_foreign_page_reaches_no_provider(fakes):
    require(os.access(CHROMIUM, os.X_OK), f"chromium is not installed at {CHROMIUM}")
    require((BROWSER_DIR / "node_modules" / "playwright-core").is_dir(), "npm-install browser/")
    anthropic, elevenlabs = fakes
    seen: list = []
    served = Served(_app(anthropic, elevenlabs, seen))
    proxy = served.url  # http://127.0.0.1:PORT
    foreign = served.url.replace("127.0.0.1", "localhost")  # another site
    try:
        attack = _run(f"{foreign}/page", proxy)
        attempts = [entry for entry in seen if entry[0].startswith("/api/")]
        reached = len(anthropic.calls) + len(elevenlabs.calls)
        # The same calls from the proxy's own page do reach the fakes: the rule is
        # about the page's origin, not about these bodies.
        own = _run(f"{proxy}/page", proxy)
    finally:
        served.stop()

    assert attack["pageErrors"] == []
    assert set(attack["fetches"].values()) == {"opaque"}
    assert json.loads(attack["formAnswer"])["code"] == "cross_origin_refused"
    assert len(attempts) == 4
    assert all(site == "cross-site" and status == 403 for _, site, status in attempts), attempts
    # Nothing from the foreign page reached a provider; the own page's uploads did
    # (its text/plain and urlencoded calls are refused for their media type).
    assert reached == 0
    assert own["pageErrors"] == []
    assert len(elevenlabs.calls) == 2 and len(anthropic.calls) == 0
