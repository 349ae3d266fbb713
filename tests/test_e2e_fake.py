"""The fake fal itself: the shapes the end-to-end tests rely on, asserted directly.

If the fake drifted from fal's protocol the end-to-end tests would prove
nothing, so its answers are pinned here with plain HTTP, no proxy involved.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from flask_fal_proxy.testing import FakeFal, loopback_session

KEY = "fake-shape-key"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeFal]:
    with FakeFal(key=KEY, stream_delay=0.0) as fake:
        yield fake


@pytest.fixture
def fal(fake: FakeFal) -> requests.Session:
    session = loopback_session(fake.port)
    session.headers["Authorization"] = f"Key {KEY}"
    return session


def test_calls_without_the_key_are_refused_and_recorded(fake):
    fake.calls.clear()
    response = loopback_session(fake.port).post(
        "https://fal.run/fal-ai/flux/schnell", json={"prompt": "x"}, timeout=5
    )
    assert response.status_code == 401
    (call,) = fake.calls
    assert (call.host, call.path, call.json()) == (
        "fal.run",
        "/fal-ai/flux/schnell",
        {"prompt": "x"},
    )


def test_queue_walks_in_queue_in_progress_completed_with_logs_only_when_asked(fal):
    submitted = fal.post("https://queue.fal.run/fal-ai/flux/schnell", json={"prompt": "p"})
    job = submitted.json()
    assert job["status"] == "IN_QUEUE"
    base = f"https://queue.fal.run/fal-ai/flux/requests/{job['request_id']}"
    assert (job["response_url"], job["status_url"], job["cancel_url"]) == (
        base,
        f"{base}/status",
        f"{base}/cancel",
    )
    assert fal.get(base).status_code == 400  # not finished yet
    first = fal.get(f"{base}/status", params={"logs": "0"}).json()
    second = fal.get(f"{base}/status", params={"logs": "1"}).json()
    third = fal.get(f"{base}/status", params={"logs": "1"}).json()
    assert [first["status"], second["status"], third["status"]] == [
        "IN_QUEUE",
        "IN_PROGRESS",
        "COMPLETED",
    ]
    assert "logs" not in first and second["logs"][0]["message"] == "generating"
    result = fal.get(base)
    assert result.headers["x-fal-request-id"] == job["request_id"]
    assert result.json()["prompt"] == "p"


def test_status_stream_and_run_stream_are_server_sent_events(fal):
    job = fal.post("https://queue.fal.run/fal-ai/flux/schnell", json={"prompt": "s"}).json()
    url = f"https://queue.fal.run/fal-ai/flux/requests/{job['request_id']}/status/stream"
    events = fal.get(url).text.strip().split("\n\n")
    assert [e.split('"status": "')[1].split('"')[0] for e in events] == [
        "IN_QUEUE",
        "IN_PROGRESS",
        "COMPLETED",
    ]
    stream = fal.post("https://fal.run/fal-ai/flux/schnell/stream", json={"prompt": "abcdefgh"})
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    chunks = [c for c in stream.text.split("\n\n") if c]
    assert len(chunks) == 4 and all(c.startswith("data: ") for c in chunks)
    assert '"partial": true' in chunks[0] and '"prompt": "abcdefgh"' in chunks[-1]


def test_cancel_is_accepted(fal):
    job = fal.post("https://queue.fal.run/fal-ai/flux/schnell", json={"prompt": "c"}).json()
    response = fal.put(job["cancel_url"])
    assert (response.status_code, response.json()) == (202, {"status": "CANCELLATION_REQUESTED"})


@pytest.mark.parametrize("count", [0, 5, 10])
def test_out_of_range_num_images_is_a_422_in_fal_shape(fal, count):
    for url in ("https://fal.run/fal-ai/flux/schnell", "https://queue.fal.run/fal-ai/flux/schnell"):
        response = fal.post(url, json={"prompt": "x", "num_images": count})
        assert response.status_code == 422
        (detail,) = response.json()["detail"]
        assert detail["loc"] == ["body", "num_images"] and detail["type"] == "less_than_equal"


def test_upload_url_takes_a_cross_origin_put(fake, fal):
    initiate = fal.post(
        "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3",
        json={"content_type": "text/plain", "file_name": "n.txt"},
    ).json()
    upload_url = initiate["upload_url"]
    assert upload_url.startswith(fake.base_url) and initiate["file_url"].endswith("/n.txt")
    preflight = requests.options(
        upload_url,
        headers={
            "Origin": "http://127.0.0.1:1",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=5,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    put = requests.put(upload_url, data=b"bytes!", headers={"Origin": "http://x"}, timeout=5)
    assert put.status_code == 200 and put.headers["Access-Control-Allow-Origin"] == "*"
    assert fake.uploads[upload_url[len(fake.base_url) :]] == b"bytes!"
