"""The real ``@fal-ai/client`` in Node, through the example app under gunicorn.

Only the last hop is redirected: gunicorn serves the example app unchanged
and its outbound session delivers the real fal URLs to a fake fal running in
this process, so each test can read exactly what "fal" received.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator

import pytest
from e2e.harness import clean_env, gunicorn, require_node, run_node

from flask_fal_proxy.testing import FakeFal

pytestmark = pytest.mark.e2e

KEY = "e2e-key-" + secrets.token_hex(8)
MODEL = "fal-ai/flux/schnell"


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    # A slow stream makes buffering visible: partial events must arrive early.
    with FakeFal(key=KEY, stream_delay=0.25) as fake:
        yield fake


@pytest.fixture(scope="module")
def app_url(fal: FakeFal) -> Iterator[str]:
    require_node()
    env = clean_env(FAL_KEY=KEY, FAL_PROXY_FAKE_PORT=str(fal.port), SECRET_KEY="e2e")
    server = gunicorn("example_app.app:app", env)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def scenario(fal: FakeFal, app_url: str):
    def run(name: str) -> dict:
        fal.calls.clear()
        return run_node("client_scenarios.mjs", app_url, name)

    return run


def only_with_our_key(fal: FakeFal) -> None:
    assert fal.calls, "nothing reached fal"
    for call in fal.calls:
        assert call.headers["Authorization"] == f"Key {KEY}", call
        assert "Cookie" not in call.headers, call


def svg_text(data_url: str) -> str:
    prefix = "data:image/svg+xml;base64,"
    assert data_url.startswith(prefix)
    return base64.b64decode(data_url[len(prefix) :]).decode()


@pytest.mark.parametrize("name", ["subscribe", "subscribe_streaming"])
def test_subscribe_walks_the_queue_and_returns_the_result(scenario, fal, name):
    out = scenario(name)["ok"]
    mode = "polling" if name == "subscribe" else "streaming"
    assert out["data"]["prompt"] == f"subscribe {mode}"
    assert f"subscribe {mode}" in svg_text(out["data"]["images"][0]["url"])
    assert out["requestId"] == out["enqueued"]
    statuses = [u["status"] for u in out["updates"]]
    assert statuses == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert out["updates"][-1]["logs"][0]["message"] == "generating"
    only_with_our_key(fal)
    paths = [(c.method, c.host, c.path) for c in fal.calls]
    rid = out["requestId"]
    base = f"/fal-ai/flux/requests/{rid}"
    assert paths[0] == ("POST", "queue.fal.run", f"/{MODEL}")
    assert fal.calls[0].json() == {"prompt": f"subscribe {mode}"}
    assert paths[-1] == ("GET", "queue.fal.run", base)
    if mode == "streaming":
        assert paths[1:-1] == [("GET", "queue.fal.run", f"{base}/status/stream")]
    else:
        assert paths[1:-1] == [("GET", "queue.fal.run", f"{base}/status")] * 3
        assert {c.query for c in fal.calls[1:-1]} == {"logs=1"}


def test_queue_submit_status_result(scenario, fal):
    out = scenario("queue")["ok"]
    rid = out["submitted"]["request_id"]
    assert out["submitted"]["status"] == "IN_QUEUE"
    assert out["submitted"]["status_url"].endswith(f"/requests/{rid}/status")
    assert [s["status"] for s in out["statuses"]] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert out["statuses"][-1]["logs"][0]["level"] == "INFO"
    assert out["result"]["requestId"] == rid
    assert out["result"]["data"]["prompt"] == "queue by hand"
    only_with_our_key(fal)
    assert fal.calls[0].headers["X-Fal-Queue-Priority"] == "low"


def test_queue_cancel(scenario, fal):
    out = scenario("cancel")["ok"]
    rid = out["submitted"]["request_id"]
    only_with_our_key(fal)
    last = fal.calls[-1]
    assert (last.method, last.path) == ("PUT", f"/fal-ai/flux/requests/{rid}/cancel")
    assert last.body == b""


def test_run_is_synchronous(scenario, fal):
    out = scenario("run")["ok"]
    assert out["data"]["prompt"] == "run now"
    assert out["data"]["seed"] == 42
    assert out["requestId"]
    only_with_our_key(fal)
    ((method, host, path),) = [(c.method, c.host, c.path) for c in fal.calls]
    assert (method, host, path) == ("POST", "fal.run", f"/{MODEL}")


def test_a_key_held_by_the_client_is_never_forwarded(scenario, fal):
    out = scenario("run_with_client_key")["ok"]
    assert out["data"]["prompt"] == "whose key"
    only_with_our_key(fal)
    assert all("browser-held-key" not in str(c.headers) for c in fal.calls)


def test_stream_delivers_partial_events_before_the_final_one(scenario, fal):
    out = scenario("stream")["ok"]
    events = out["events"]
    assert [e["data"].get("step") for e in events] == [1, 2, 3, None]
    assert events[2]["data"]["text"] == "streaming wo"
    assert out["final"]["prompt"] == "streaming words"
    assert out["final"] == events[-1]["data"]
    # The fake waits 0.25 s between events: a relay that buffered would
    # deliver them all at once, at the end.
    assert events[-1]["at"] - events[0]["at"] >= 0.5 * 1000
    only_with_our_key(fal)
    (call,) = fal.calls
    assert (call.method, call.host, call.path) == ("POST", "fal.run", f"/{MODEL}/stream")
    assert "text/event-stream" in call.headers["Accept"]


def test_storage_upload_goes_direct_to_the_signed_url(scenario, fal):
    fal.uploads.clear()
    out = scenario("upload")["ok"]
    assert out["url"].startswith("https://v3.fal.media/files/fake/")
    assert out["url"].endswith("/hello.txt")
    only_with_our_key(fal)
    (initiate,) = fal.calls
    assert (initiate.host, initiate.path, initiate.query) == (
        "rest.fal.ai",
        "/storage/upload/initiate",
        "storage_type=fal-cdn-v3",
    )
    assert initiate.json() == {"content_type": "text/plain", "file_name": "hello.txt"}
    ((path, body),) = fal.uploads.items()
    assert body == b"hello from the e2e test\n"
    assert out["url"].split("/")[-2] == path.split("/")[-2]


def test_run_with_a_file_uploads_it_first(scenario, fal):
    fal.uploads.clear()
    out = scenario("run_with_upload")["ok"]
    assert out["data"]["prompt"] == "with a file"
    image_url = fal.calls[-1].json()["image_url"]
    assert image_url.startswith("https://v3.fal.media/files/fake/")
    assert list(fal.uploads.values()) == [bytes([137, 80, 78, 71])]
    assert [c.host for c in fal.calls] == ["rest.fal.ai", "fal.run"]
    only_with_our_key(fal)


def test_disallowed_endpoint_raises_api_error_with_our_message(scenario, fal):
    err = scenario("disallowed_endpoint")["error"]
    assert err["isApiError"] and not err["isValidationError"]
    assert err["status"] == 403
    assert err["message"] == "This endpoint is not allowed by the proxy."
    assert err["body"]["code"] == "endpoint_not_allowed"
    assert fal.calls == []


def test_unauthenticated_call_raises_401_with_our_message(scenario, fal):
    err = scenario("unauthenticated")["error"]
    assert err["isApiError"]
    assert err["status"] == 401
    assert err["message"] == "Authentication is required to use the fal proxy."
    assert err["body"]["code"] == "unauthorized"
    assert fal.calls == []


@pytest.mark.parametrize("name", ["validation_error", "validation_error_queue"])
def test_upstream_422_becomes_a_validation_error(scenario, fal, name):
    err = scenario(name)["error"]
    assert err["isValidationError"] and err["name"] == "ValidationError"
    assert err["status"] == 422
    (field,) = err["fieldErrors"]
    assert field["loc"] == ["body", "num_images"]
    assert field["type"] == "less_than_equal"
    only_with_our_key(fal)
    assert len(fal.calls) == 1
