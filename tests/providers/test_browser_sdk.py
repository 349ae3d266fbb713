"""``@anthropic-ai/sdk`` in headless chromium, on a page of another origin, through the route.

This is CE.SDK's plugin setup: the SDK in the page with ``baseURL`` set to
the proxy route and no key, so the browser sends a CORS preflight (the SDK's
``anthropic-*`` and ``x-stainless-*`` headers are not CORS-safelisted) and
then reads the answer as server-sent events. The fake in this process
answers; the key is added by the proxy and never seen by the page.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import flask
import pytest
from e2e.harness import CHROMIUM, clean_env, require

from flask_fal_proxy.cross_origin import allow_browser_origins
from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.rate_limits import limit_proxy_routes
from providers.provider_support import ANTHROPIC_KEY, Served

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def page_origin():
    """The page's own origin: a static server for page.html and its bundle."""
    require(os.access(CHROMIUM, os.X_OK), f"chromium is not installed at {CHROMIUM}")
    require(
        (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(),
        "tests/providers/browser is not npm-installed",
    )
    require((BROWSER_DIR / "dist" / "page.js").is_file(), "tests/providers/browser is not built")
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(BROWSER_DIR))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def run_page(url: str) -> dict:
    return run_script("stream.mjs", url)


def require_studio_page() -> None:
    """Skip (locally) unless chromium, the browser scripts and the studio's bundle are there."""
    require(os.access(CHROMIUM, os.X_OK), f"chromium is not installed at {CHROMIUM}")
    require(
        (BROWSER_DIR / "node_modules" / "playwright-core").is_dir(),
        "tests/providers/browser is not npm-installed",
    )
    require(
        (BROWSER_DIR.parents[2] / "example_app" / "static" / "fal-client.js").is_file(),
        "the example bundle is not built",
    )


def run_script(script: str, *args: str, timeout: float = 90) -> dict:
    """Run a script of tests/providers/browser; its last stdout line is its JSON report."""
    done = subprocess.run(
        ["node", str(BROWSER_DIR / script), *args],
        cwd=BROWSER_DIR,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"{script} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(lines[-1])


def test_the_sdk_streams_a_message_cross_origin(fakes, page_origin):
    fake, _ = fakes
    seen: list[tuple[str, str, str | None]] = []
    app = flask.Flask("cross-origin")
    app.config["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY

    @app.before_request
    def record() -> None:
        request = flask.request
        seen.append((request.method, request.path, request.headers.get("Origin")))

    app.register_blueprint(create_provider_blueprint("anthropic", session=fake.session()))
    allow_browser_origins(app, [page_origin], ["/api/anthropic"])
    limit_proxy_routes(app, {"anthropic_proxy": "5/minute"})
    # The proxy on "localhost", the page on "127.0.0.1": two origins.
    served = Served(app)
    proxy_url = served.url.replace("127.0.0.1", "localhost") + "/api/anthropic"
    try:
        prompt = "tokens one by one please"
        result = run_page(f"{page_origin}/page.html?proxy={proxy_url}&prompt={prompt}")
    finally:
        served.stop()

    assert result["pageErrors"] == []
    assert result["state"] == "done", result
    assert result["text"] == "".join(fake.reply_words(prompt))
    report = result["report"]
    assert report["events"][0] == "message_start" and report["events"][-1] == "message_stop"
    assert [t["text"] for t in report["tokens"]] == fake.reply_words(prompt)
    # Tokens reached the page as they were sent (10 ms apart), not in one piece.
    assert report["tokens"][-1]["at"] - report["tokens"][0]["at"] >= 30

    # The preflight came first, from the page's origin, and was answered by CORS alone.
    assert [(m, p) for m, p, _ in seen] == [
        ("OPTIONS", "/api/anthropic/v1/messages"),
        ("POST", "/api/anthropic/v1/messages"),
    ]
    assert {origin for _, _, origin in seen} == {page_origin}
    (call,) = fake.calls
    assert call.headers["X-Api-Key"] == ANTHROPIC_KEY
    assert "Authorization" not in call.headers
    sent = [r for r in result["requests"] if r["url"].startswith(proxy_url)]
    assert [r["method"] for r in sent] == ["POST"]
    assert sent[0]["apiKey"] is None and sent[0]["authorization"] is None
    assert sent[0]["browserAccess"] == "true"
    assert call.headers["Anthropic-Version"] == sent[0]["version"]
