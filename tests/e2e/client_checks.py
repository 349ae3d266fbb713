"""What each scenario of ``client_scenarios.mjs`` must show, whichever proxy ran it.

A check gets the scenario's JSON output, the fake fal that answered and the
key the proxy was given, and raises ``AssertionError`` at the first thing
that is not as the client and fal need it. ``tests/test_e2e_node.py`` runs
them against our proxy (all must pass); ``tests/test_e2e_server_proxy.py``
runs the same ones against ``@fal-ai/server-proxy`` and documents which fail.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from flask_fal_proxy.testing import FakeFal

MODEL = "fal-ai/flux/schnell"
JOBS = "/fal-ai/flux/requests"

Check = Callable[[dict[str, Any], FakeFal, str], None]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


def ok(result: dict[str, Any]) -> dict[str, Any]:
    error = result.get("error")
    assert error is None, f"the client raised {error and error['name']} {error and error['status']}"
    return result["ok"]


def raised(result: dict[str, Any]) -> dict[str, Any]:
    assert "error" in result, "the client returned a result instead of raising"
    return result["error"]


def only_with_key(fal: FakeFal, key: str) -> None:
    assert fal.calls, "nothing reached fal"
    for call in fal.calls:
        assert call.headers["Authorization"] == f"Key {key}", "fal got another key"
        assert "Cookie" not in call.headers, "fal got the browser's cookies"


def svg_text(data_url: str) -> str:
    prefix = "data:image/svg+xml;base64,"
    assert data_url.startswith(prefix)
    return base64.b64decode(data_url[len(prefix) :]).decode()


def _subscribe(result: dict[str, Any], fal: FakeFal, key: str, mode: str) -> None:
    out = ok(result)
    assert out["data"]["prompt"] == f"subscribe {mode}"
    assert f"subscribe {mode}" in svg_text(out["data"]["images"][0]["url"])
    assert out["requestId"] == out["enqueued"]
    assert [u["status"] for u in out["updates"]] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert out["updates"][-1]["logs"][0]["message"] == "generating"
    only_with_key(fal, key)
    paths = [(c.method, c.host, c.path) for c in fal.calls]
    base = f"{JOBS}/{out['requestId']}"
    assert paths[0] == ("POST", "queue.fal.run", f"/{MODEL}")
    assert fal.calls[0].json() == {"prompt": f"subscribe {mode}"}
    assert paths[-1] == ("GET", "queue.fal.run", base)
    if mode == "streaming":
        assert paths[1:-1] == [("GET", "queue.fal.run", f"{base}/status/stream")]
        assert "text/event-stream" in fal.calls[1].headers["Accept"]
    else:
        assert paths[1:-1] == [("GET", "queue.fal.run", f"{base}/status")] * 3
        assert {c.query for c in fal.calls[1:-1]} == {"logs=1"}


@check("subscribe")
def subscribe(result, fal, key):
    """fal.subscribe, polling: submit, status until COMPLETED (with logs), result."""
    _subscribe(result, fal, key, "polling")


@check("subscribe_streaming")
def subscribe_streaming(result, fal, key):
    """fal.subscribe with mode "streaming": the status stream (SSE) instead of polling."""
    _subscribe(result, fal, key, "streaming")


@check("queue")
def queue(result, fal, key):
    """fal.queue.submit / status (logs) / result by hand, with a queue priority."""
    out = ok(result)
    rid = out["submitted"]["request_id"]
    assert out["submitted"]["status"] == "IN_QUEUE"
    assert out["submitted"]["status_url"].endswith(f"/requests/{rid}/status")
    assert [s["status"] for s in out["statuses"]] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert out["statuses"][-1]["logs"][0]["level"] == "INFO"
    assert out["result"]["requestId"] == rid
    assert out["result"]["data"]["prompt"] == "queue by hand"
    only_with_key(fal, key)
    assert fal.calls[0].headers["X-Fal-Queue-Priority"] == "low"


@check("cancel")
def cancel(result, fal, key):
    """fal.queue.cancel: a PUT without a body reaches fal as one."""
    out = ok(result)
    rid = out["submitted"]["request_id"]
    only_with_key(fal, key)
    last = fal.calls[-1]
    assert (last.method, last.path) == ("PUT", f"{JOBS}/{rid}/cancel")
    assert last.body == b"", "fal received a body the client did not send"


@check("run")
def run(result, fal, key):
    """fal.run: one synchronous call to fal.run."""
    out = ok(result)
    assert out["data"]["prompt"] == "run now"
    assert out["data"]["seed"] == 42
    assert out["requestId"]
    only_with_key(fal, key)
    assert [(c.method, c.host, c.path) for c in fal.calls] == [("POST", "fal.run", f"/{MODEL}")]


@check("run_with_client_key")
def run_with_client_key(result, fal, key):
    """fal.run from a client that holds a key of its own: fal must only see the server's."""
    out = ok(result)
    assert out["data"]["prompt"] == "whose key"
    only_with_key(fal, key)
    assert all("browser-held-key" not in str(c.headers) for c in fal.calls)


@check("stream")
def stream(result, fal, key):
    """fal.stream: partial events arrive as fal sends them, then the final one."""
    out = ok(result)
    events = out["events"]
    assert [e["data"].get("step") for e in events] == [1, 2, 3, None]
    assert events[2]["data"]["text"] == "streaming wo"
    assert out["final"]["prompt"] == "streaming words"
    assert out["final"] == events[-1]["data"]
    # The fake waits 0.25 s between events: a relay that buffered would
    # deliver them all at once, at the end.
    assert events[-1]["at"] - events[0]["at"] >= 500, "the events arrived together"
    only_with_key(fal, key)
    (call,) = fal.calls
    assert (call.method, call.host, call.path) == ("POST", "fal.run", f"/{MODEL}/stream")
    assert "text/event-stream" in call.headers["Accept"]


@check("upload")
def upload(result, fal, key):
    """fal.storage.upload: initiate through the proxy, PUT straight to the signed URL."""
    out = ok(result)
    assert out["url"].startswith("https://v3.fal.media/files/fake/")
    assert out["url"].endswith("/hello.txt")
    only_with_key(fal, key)
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


@check("run_with_upload")
def run_with_upload(result, fal, key):
    """fal.run with a File in the input: the client uploads it, then sends its URL."""
    out = ok(result)
    assert out["data"]["prompt"] == "with a file"
    assert fal.calls[-1].json()["image_url"].startswith("https://v3.fal.media/files/fake/")
    assert list(fal.uploads.values()) == [bytes([137, 80, 78, 71])]
    assert [c.host for c in fal.calls] == ["rest.fal.ai", "fal.run"]
    only_with_key(fal, key)


@check("disallowed_endpoint")
def disallowed_endpoint(result, fal, key):
    """A model outside the allowed endpoints: ApiError 403 with the proxy's message."""
    err = raised(result)
    assert err["isApiError"] and not err["isValidationError"]
    assert err["status"] == 403
    assert err["message"] == "This endpoint is not allowed by the proxy."
    assert err["body"]["code"] == "endpoint_not_allowed"
    assert fal.calls == []


@check("unauthenticated")
def unauthenticated(result, fal, key):
    """No session: ApiError 401 with the proxy's message, nothing sent to fal."""
    err = raised(result)
    assert err["isApiError"]
    assert err["status"] == 401
    assert err["message"] == "Authentication is required to use the fal proxy."
    assert err["body"]["code"] == "unauthorized"
    assert fal.calls == []


def _validation(result: dict[str, Any], fal: FakeFal, key: str) -> None:
    err = raised(result)
    assert err["isValidationError"] and err["name"] == "ValidationError"
    assert err["status"] == 422
    (field,) = err["fieldErrors"]
    assert field["loc"] == ["body", "num_images"]
    assert field["type"] == "less_than_equal"
    only_with_key(fal, key)
    assert len(fal.calls) == 1


@check("validation_error")
def validation_error(result, fal, key):
    """fal.run with an input fal rejects (422): the client raises ValidationError."""
    _validation(result, fal, key)


@check("validation_error_queue")
def validation_error_queue(result, fal, key):
    """fal.subscribe with an input fal rejects at submit (422): ValidationError."""
    _validation(result, fal, key)
