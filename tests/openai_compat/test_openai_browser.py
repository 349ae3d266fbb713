"""The ``openai`` npm SDK in headless chromium calls the facade from another origin.

The page is served from one port of 127.0.0.1 and the API from another, so
every call is cross-origin: the browser sends a CORS preflight naming the
SDK's ``X-Stainless-*`` headers, and the call only happens if Flask-CORS, as
the blueprint configures it, allows them. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask
import pytest
from e2e.harness import CHROMIUM, require, run_node

from flask_fal_proxy.testing import FakeFal
from openai_compat.openai_support import ACCESS_KEY, Served, submits

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"


def _node(*args: str) -> dict[str, Any]:
    return run_node("browser.mjs", *args, timeout=90, cwd=BROWSER_DIR)


def _page_app(bundle: Path) -> flask.Flask:
    app = flask.Flask("openai-browser-page")

    @app.get("/")
    def index() -> str:
        return (
            '<!doctype html><title>openai sdk</title><script type="module" src="/page.js"></script>'
        )

    @app.get("/page.js")
    def script() -> flask.Response:
        return flask.Response(bundle.read_bytes(), mimetype="text/javascript")

    return app


def _recorded(app: flask.Flask, seen: list[dict[str, str]]) -> None:
    inner = app.wsgi_app

    def record(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            seen.append(
                {
                    "method": environ["REQUEST_METHOD"],
                    "path": environ["PATH_INFO"],
                    "requested": environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", ""),
                    "status": status.split()[0],
                    **{k.lower(): v for k, v in headers if k.lower().startswith("access-control")},
                }
            )
            return start_response(status, headers, *rest)

        return inner(environ, start)

    app.wsgi_app = record  # type: ignore[method-assign]


def test_the_openai_js_sdk_calls_the_facade_cross_origin(
    tmp_path: Path, fal: FakeFal, serve: Callable[..., Served]
) -> None:
    require(shutil.which("node") is not None, "Node.js is not installed")
    require(
        (BROWSER_DIR / "node_modules" / "openai").is_dir(), f"{BROWSER_DIR} is not npm-installed"
    )
    require(os.access(CHROMIUM, os.X_OK), f"chromium is not installed at {CHROMIUM}")
    bundle = tmp_path / "page.js"
    _node("--build", str(bundle))
    page = Served(_page_app(bundle))
    try:
        seen: list[dict[str, str]] = []
        api = serve(cors_origins=[page.url])
        _recorded(api.server.app, seen)  # type: ignore[attr-defined]
        query = f"?api={api.url}&key={ACCESS_KEY}&prompt=a+kite+in+chromium"

        out = _node(f"{page.url}/{query}")
    finally:
        page.stop()

    assert out["pageErrors"] == [], out
    report = out["report"]
    assert report.get("error") is None, report
    assert report["images"] == 1 and report["png"] is True
    assert "flux-dev" in report["models"]
    assert report["refusal"] == {
        "name": "AuthenticationError",
        "status": 401,
        "code": "invalid_api_key",
    }
    assert {r["url"].split("/")[2] for r in out["requests"]} <= {
        page.url.split("/")[2],
        api.url.split("/")[2],
    }
    preflight = next(
        s for s in seen if s["method"] == "OPTIONS" and s["path"] == "/v1/images/generations"
    )
    assert "x-stainless-" in preflight["requested"]
    assert preflight["status"] == "200"
    assert preflight["access-control-allow-origin"] == page.url
    allowed = preflight["access-control-allow-headers"].lower()
    assert all(h.strip() in allowed for h in preflight["requested"].split(","))
    assert submits(fal)[0].json()["prompt"] == "a kite in chromium"
