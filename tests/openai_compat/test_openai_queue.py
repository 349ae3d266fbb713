"""The queue runner and image fetching against scripted fal answers (``responses``).

These are the answers a loopback fake does not give on its own: a 5xx at
submit, queue URLs that point elsewhere, flaky status polls, a 422 at result
time, an image on a host that is not fal's.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests
import responses

from flask_fal_proxy.openai_compat import errors
from flask_fal_proxy.openai_compat.jobs import Progress, QueueRunner
from flask_fal_proxy.openai_compat.keys import KeyPool
from flask_fal_proxy.openai_compat.media import image_b64
from flask_fal_proxy.openai_compat.registry import Model
from flask_fal_proxy.openai_compat.schemas import DocumentUnavailable, SchemaCache, read_inputs
from flask_fal_proxy.relay import Relay, default_session
from flask_fal_proxy.testing import loopback_session, openapi_document

SUBMIT = "https://queue.fal.run/fal-ai/flux/dev"
BASE = "https://queue.fal.run/fal-ai/flux/requests/r-1"


def runner(timeout: float = 5.0) -> QueueRunner:
    return QueueRunner(
        default_session(), KeyPool(["k1"]), generation_timeout=timeout, first_poll=0.01
    )


def run(queue: QueueRunner, progress: Progress | None = None) -> list[dict]:
    return queue.run_all(
        "fal-ai/flux/dev", "fal-ai/flux", [{"prompt": "p"}], progress or Progress()
    )


@responses.activate
def test_queue_urls_elsewhere_are_replaced_by_the_ones_fal_client_builds() -> None:
    responses.post(
        SUBMIT,
        json={
            "request_id": "r-1",
            "status_url": "https://evil.example/fal-ai/flux/requests/r-1/status",
            "response_url": "https://queue.fal.run/other-owner/app/requests/r-1",
            "cancel_url": f"{BASE}/../../x/cancel",
        },
    )
    responses.get(f"{BASE}/status", json={"status": "COMPLETED"})
    responses.get(BASE, json={"images": [{"url": "https://v3.fal.media/x.png"}]})

    assert run(runner()) == [{"images": [{"url": "https://v3.fal.media/x.png"}]}]
    assert [c.request.url for c in responses.calls] == [SUBMIT, f"{BASE}/status", BASE]
    assert all(c.request.headers["Authorization"] == "Key k1" for c in responses.calls)


@responses.activate
def test_a_5xx_at_submit_counts_as_submitted() -> None:
    responses.post(SUBMIT, status=503, json={"detail": "overloaded"})
    progress = Progress()
    with pytest.raises(errors.OpenAIError) as caught:
        run(runner(), progress)
    assert caught.value.status == 502 and "overloaded" in caught.value.message
    assert progress.submitted


def test_fal_unreachable_at_submit_is_safe_to_retry() -> None:
    # A real refused connection: nothing was sent, so nothing was paid.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    queue = QueueRunner(
        loopback_session(port), KeyPool(["k1"]), generation_timeout=5.0, first_poll=0.01
    )
    progress = Progress()
    with pytest.raises(errors.OpenAIError) as caught:
        run(queue, progress)
    assert caught.value.code == "upstream_unreachable" and not progress.submitted


@responses.activate
def test_a_connection_lost_after_the_submit_was_sent_counts_as_submitted() -> None:
    responses.post(SUBMIT, body=requests.ConnectionError("Connection aborted."))
    progress = Progress()
    with pytest.raises(errors.OpenAIError) as caught:
        run(runner(), progress)
    assert caught.value.code == "upstream_interrupted" and progress.submitted


@responses.activate
def test_flaky_polls_are_retried_until_they_answer() -> None:
    responses.post(SUBMIT, json={"request_id": "r-1"})
    responses.get(f"{BASE}/status", status=502)
    responses.get(f"{BASE}/status", body=requests.ConnectionError("reset"))
    responses.get(f"{BASE}/status", json={"status": "IN_PROGRESS"})
    responses.get(f"{BASE}/status", json={"status": "COMPLETED"})
    responses.get(BASE, json={"images": []})
    assert run(runner()) == [{"images": []}]


@responses.activate
def test_polls_that_keep_failing_cancel_the_job() -> None:
    responses.post(SUBMIT, json={"request_id": "r-1"})
    responses.get(f"{BASE}/status", status=500)
    responses.put(f"{BASE}/cancel", status=202)
    with pytest.raises(errors.OpenAIError) as caught:
        run(runner())
    assert caught.value.status == 502
    assert responses.calls[-1].request.method == "PUT"


@responses.activate
def test_a_422_at_result_time_is_a_readable_400() -> None:
    responses.post(SUBMIT, json={"request_id": "r-1"})
    responses.get(f"{BASE}/status", json={"status": "COMPLETED", "error": "bad input"})
    detail = [{"loc": ["body", "image_url"], "msg": "could not download the image"}]
    responses.get(BASE, status=422, json={"detail": detail})
    with pytest.raises(errors.OpenAIError) as caught:
        run(runner())
    assert caught.value.status == 400
    assert caught.value.message == "image_url: could not download the image"


@responses.activate
def test_a_submit_without_a_usable_request_id_is_a_502() -> None:
    responses.post(SUBMIT, json={"request_id": "../../x"})
    with pytest.raises(errors.OpenAIError) as caught:
        run(runner())
    assert caught.value.status == 502


def test_images_are_fetched_from_fal_media_only() -> None:
    relay = Relay(default_session(), connect_timeout=1, read_timeout=1)
    for url in (
        "https://evil.example/x.png",
        "http://v3.fal.media/x.png",
        "https://v3.fal.media.evil.example/x.png",
        "https://user@v3.fal.media/x.png",
        "https://v3.fal.media:8443/x.png",
    ):
        with pytest.raises(errors.OpenAIError) as caught:
            image_b64(url, relay, (1, 1))
        assert caught.value.code == "image_unavailable", url
    with pytest.raises(errors.OpenAIError):
        image_b64("data:image/png;base64,!!!", relay, (1, 1))
    assert image_b64("data:image/png;base64,iVBORw0K", relay, (1, 1)) == b"iVBORw0K"


@responses.activate
def test_media_redirects_are_not_followed() -> None:
    responses.get(
        "https://v3.fal.media/x.png", status=302, headers={"Location": "http://169.254.169.254/"}
    )
    relay = Relay(default_session(), connect_timeout=1, read_timeout=1)
    with pytest.raises(errors.OpenAIError) as caught:
        image_b64("https://v3.fal.media/x.png", relay, (1, 1))
    assert "302" in caught.value.message and len(responses.calls) == 1


def test_a_failed_refresh_keeps_the_stale_schema() -> None:
    document = openapi_document("fal-ai/flux/dev")
    answers: list[object] = [document, None]
    fetched: list[str] = []

    def fetch(endpoint: str) -> dict:
        fetched.append(endpoint)
        answer = answers.pop(0)
        if answer is None:
            raise DocumentUnavailable("fal answered 503")
        return json.loads(json.dumps(answer))

    cache = SchemaCache(fetch, ttl=0.0)
    model = Model("flux-dev", "fal-ai/flux/dev")
    first = cache.inputs(model)
    time.sleep(0.01)
    assert cache.inputs(model) == first == read_inputs(document, "fal-ai/flux/dev")
    assert cache.inputs(model) == first  # not asked again right after a failure
    assert fetched == ["fal-ai/flux/dev", "fal-ai/flux/dev"]
