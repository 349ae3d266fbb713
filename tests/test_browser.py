"""The example page in headless chromium, end to end, offline.

The page loads ``@fal-ai/client`` from the bundle built at set-up time and
runs ``fal.subscribe`` through the proxy under gunicorn; the fake fal in this
process answers. The screenshot lands in ``artifacts/`` for a human to look at.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import pytest
from e2e.harness import ARTIFACTS, clean_env, gunicorn, require_chromium, require_node, run_node

from flask_fal_proxy.testing import FakeFal

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

KEY = "browser-key-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeFal, str]]:
    require_node()
    require_chromium()
    with FakeFal(key=KEY, stream_delay=0.05) as fake:
        env = clean_env(FAL_KEY=KEY, FAL_PROXY_FAKE_PORT=str(fake.port), SECRET_KEY="browser")
        server = gunicorn("example_app.app:app", env)
        try:
            yield fake, server.url
        finally:
            server.stop()


def test_the_page_generates_an_image_through_the_proxy(served):
    fake, url = served
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-example-page.png"
    shot.unlink(missing_ok=True)
    prompt = "a red kite over the dunes"

    page = run_node("browser.mjs", url, prompt, str(shot), timeout=90)

    assert page["pageErrors"] == []
    assert page["state"] == "done", page
    assert page["error"] is None
    assert page["caption"].startswith(f"“{prompt}” (request ")
    svg = base64.b64decode(page["imageSrc"].split(",", 1)[1]).decode()
    assert prompt in svg
    assert page["imageVisible"] and page["imageWidth"] == 512
    assert "Status: IN_QUEUE" in page["statuses"] and page["statuses"][-1] == "Done"
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Only the app's origin is contacted; the bundle is served locally.
    assert {r["url"].split("/")[2] for r in page["requests"]} == {url.split("/")[2]}
    proxied = [r for r in page["requests"] if r["url"] == f"{url}/api/fal/proxy"]
    assert proxied[0]["target"] == "https://queue.fal.run/fal-ai/flux/schnell"
    assert all(r["authorization"] is None for r in page["requests"])

    submit = fake.calls[0]
    assert (submit.method, submit.host, submit.path) == (
        "POST",
        "queue.fal.run",
        "/fal-ai/flux/schnell",
    )
    assert submit.json() == {"prompt": prompt}
    assert len(fake.calls) == len(proxied)
    assert all(c.headers["Authorization"] == f"Key {KEY}" for c in fake.calls)
    assert all("Cookie" not in c.headers for c in fake.calls)
    rid = page["caption"].split("request ")[1].rstrip(")")
    assert fake.calls[-1].path == f"/fal-ai/flux/requests/{rid}"


def test_an_expired_session_shows_the_proxy_refusal(served):
    fake, url = served
    fake.calls.clear()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-example-page-refused.png"

    page = run_node("browser.mjs", url, "no session", str(shot), "--drop-session", timeout=90)

    assert page["state"] == "failed", page
    assert page["error"] == "ApiError: Authentication is required to use the fal proxy."
    assert page["imageVisible"] is False
    assert [r["target"] for r in page["requests"] if r["target"]] == [
        "https://queue.fal.run/fal-ai/flux/schnell"
    ]
    assert fake.calls == []
