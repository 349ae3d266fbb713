"""One call pays fal once: every way fal's answer can break, at every stage of a job.

fal is a raw socket server (``fal_faults.FaultyFal``) whose answer at one
stage is cut off after its headers or stalls there; the facade is served on
127.0.0.1 and called over HTTP. A failure after a submit was sent is a 502
or 504 with ``x-should-retry: false`` whatever exception the transport
raised, and a job fal named is cancelled; a schema or an image that cannot
be fetched is a 502 with its own code. The read timeout is cut to half a
second so that a stall ends quickly.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import flask
import openai
import pytest
import requests

from flask_fal_proxy.openai_compat import blueprint, create_openai_blueprint
from flask_fal_proxy.testing import loopback_session
from openai_compat.fal_faults import FaultyFal
from openai_compat.openai_support import ACCESS_KEY, FAL_KEY, Served

MODELS = {"flux-dev": "fal-ai/flux/dev", "sdxl": "fal-ai/fast-lightning-sdxl"}
AUTH = {"Authorization": f"Bearer {ACCESS_KEY}"}


@pytest.fixture
def facade(
    faulty: FaultyFal, serve_app: Callable[..., Served], monkeypatch: pytest.MonkeyPatch
) -> Served:
    monkeypatch.setattr(blueprint, "READ_TIMEOUT", 0.5)
    app = flask.Flask("facade-over-a-faulty-fal")
    app.register_blueprint(
        create_openai_blueprint(
            models=MODELS,
            access_keys=[ACCESS_KEY],
            fal_keys=[FAL_KEY],
            session=loopback_session(faulty.port),
            generation_timeout=20,
        )
    )
    return serve_app(app, Served)


def generate(facade: Served, **fields: object) -> requests.Response:
    body = {"model": "flux-dev", "prompt": "a lighthouse", **fields}
    return requests.post(f"{facade.url}/v1/images/generations", json=body, headers=AUTH, timeout=30)


def error_of(answer: requests.Response) -> dict:
    return answer.json()["error"]


# stage at fault, the fault -> status, code. Every one follows a submit.
AFTER_SUBMIT = [
    ("submit", "cut", 502, "upstream_interrupted"),
    ("submit", "stall", 504, "upstream_timeout"),
    ("status", "cut", 502, "upstream_interrupted"),
    ("status", "stall", 504, "upstream_timeout"),
    ("result", "cut", 502, "upstream_interrupted"),
    ("result", "stall", 504, "upstream_timeout"),
]


@pytest.mark.parametrize(("stage", "fault", "status", "code"), AFTER_SUBMIT)
def test_a_broken_answer_after_the_submit_is_never_retried_and_the_job_is_cancelled(
    faulty: FaultyFal, facade: Served, stage: str, fault: str, status: int, code: str
) -> None:
    faulty.faults[stage] = fault
    started = time.monotonic()
    answer = generate(facade)

    assert (answer.status_code, error_of(answer)["code"]) == (status, code)
    assert answer.headers["x-should-retry"] == "false"
    assert len(faulty.stages("submit")) == 1
    assert time.monotonic() - started < 10
    if stage == "submit":
        assert faulty.stages("cancel") == []  # fal named no job
    else:
        assert len(faulty.stages("cancel")) == 1
    if stage == "status":
        # A broken poll is retried as designed before the job is given up.
        assert len(faulty.stages("status")) == 3


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_broken_cancel_still_answers_502_without_retry(
    faulty: FaultyFal, facade: Served, fault: str
) -> None:
    faulty.faults.update(status="cut", cancel=fault)
    started = time.monotonic()
    answer = generate(facade)

    assert (answer.status_code, error_of(answer)["code"]) == (502, "upstream_interrupted")
    assert answer.headers["x-should-retry"] == "false"
    assert len(faulty.stages("cancel")) == 1
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_broken_schema_fetch_is_502_schema_unavailable_and_nothing_is_submitted(
    faulty: FaultyFal, facade: Served, fault: str
) -> None:
    faulty.faults["schema"] = fault
    answer = generate(facade)

    assert (answer.status_code, error_of(answer)["code"]) == (502, "schema_unavailable")
    assert faulty.stages("submit") == []
    # Nothing was paid: the client may retry.
    assert "x-should-retry" not in answer.headers


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_broken_image_download_is_502_image_unavailable_without_retry(
    faulty: FaultyFal, facade: Served, fault: str
) -> None:
    faulty.faults["media"] = fault
    # This model has no sync_mode, so b64_json means downloading from fal's media host.
    answer = generate(facade, model="sdxl", response_format="b64_json", n=2)

    assert (answer.status_code, error_of(answer)["code"]) == (502, "image_unavailable")
    assert answer.headers["x-should-retry"] == "false"
    assert len(faulty.stages("submit")) == 1


def test_the_openai_sdk_pays_once_when_the_submit_answer_is_cut(
    faulty: FaultyFal, facade: Served
) -> None:
    faulty.faults["submit"] = "cut"
    client = facade.client(max_retries=2)  # the SDK's default

    with pytest.raises(openai.APIStatusError) as caught:
        client.images.generate(model="flux-dev", prompt="a lighthouse")

    assert caught.value.status_code == 502
    assert len(faulty.stages("submit")) == 1


def test_an_answer_too_large_to_read_after_the_submit_is_never_retried(
    serve: Callable[..., Served], fal, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The submit reached fal and was answered, but the answer could not be read:
    # the job may be queued, so the SDKs must not submit again.
    from flask_fal_proxy.openai_compat import jobs

    monkeypatch.setattr(jobs, "MAX_RESULT_BYTES", 8)
    answer = requests.post(
        f"{serve().url}/v1/images/generations",
        json={"model": "flux-dev", "prompt": "a lighthouse"},
        headers=AUTH,
        timeout=30,
    )
    assert answer.status_code == 502
    assert answer.headers["x-should-retry"] == "false"
    submits = [c for c in fal.calls if c.method == "POST" and c.host == "queue.fal.run"]
    assert len(submits) == 1
