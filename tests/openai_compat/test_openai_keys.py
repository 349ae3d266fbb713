"""fal keys: round-robin per job, failover at submit, the same key for a job's life."""

from __future__ import annotations

import logging

import openai
import pytest

from flask_fal_proxy.openai_compat.keys import fingerprint
from flask_fal_proxy.testing import FakeFal
from openai_compat.openai_support import (
    FAL_KEY,
    LIMITED_KEY,
    REVOKED_KEY,
    SECOND_KEY,
    THIRD_KEY,
    key_of,
    submits,
)


def _job_of(call) -> str | None:
    parts = call.path.split("/")
    return parts[parts.index("requests") + 1] if "requests" in parts else None


def test_jobs_take_the_keys_in_turn_and_keep_theirs_for_every_poll(serve, fal: FakeFal) -> None:
    api = serve(fal_keys=[FAL_KEY, SECOND_KEY, THIRD_KEY]).client()
    for _ in range(4):
        api.images.generate(model="imagen4", prompt="turns")

    assert [key_of(s) for s in submits(fal)] == [FAL_KEY, SECOND_KEY, THIRD_KEY, FAL_KEY]
    keys_per_job: dict[str, set[str]] = {}
    for call in fal.calls:
        if call.host == "queue.fal.run" and _job_of(call):
            keys_per_job.setdefault(_job_of(call), set()).add(key_of(call))
    assert len(keys_per_job) == 4
    assert all(len(keys) == 1 for keys in keys_per_job.values())


def test_a_rate_limited_key_is_skipped_for_the_next(serve, fal: FakeFal) -> None:
    api = serve(fal_keys=[LIMITED_KEY, SECOND_KEY]).client()
    result = api.images.generate(model="flux-dev", prompt="failover")

    assert len(result.data) == 1
    assert [key_of(s) for s in submits(fal)] == [LIMITED_KEY, SECOND_KEY]


def test_a_revoked_key_is_benched_and_logged_by_fingerprint_only(
    serve, fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    api = serve(fal_keys=[REVOKED_KEY, SECOND_KEY]).client()
    for _ in range(3):
        api.images.generate(model="flux-dev", prompt="bench")

    assert [key_of(s) for s in submits(fal)] == [REVOKED_KEY, SECOND_KEY, SECOND_KEY, SECOND_KEY]
    benched = [r for r in caplog.records if "not using it" in r.getMessage()]
    assert len(benched) == 1 and fingerprint(REVOKED_KEY) in benched[0].getMessage()
    assert benched[0].levelno == logging.WARNING


def test_every_key_rate_limited_is_a_429_with_retry_after(serve, fal: FakeFal) -> None:
    api = serve(fal_keys=[LIMITED_KEY]).client()
    with pytest.raises(openai.RateLimitError) as caught:
        api.images.generate(model="flux-dev", prompt="p")

    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert "x-should-retry" not in caught.value.response.headers


def test_every_key_refused_is_a_502(serve, fal: FakeFal) -> None:
    api = serve(fal_keys=[REVOKED_KEY, "fal-other-revoked"]).client()
    with pytest.raises(openai.InternalServerError) as caught:
        api.images.generate(model="flux-dev", prompt="p")

    assert caught.value.status_code == 502 and caught.value.code == "fal_keys_refused"
    assert len(submits(fal)) == 2


def test_keys_never_reach_a_response(serve, fal: FakeFal) -> None:
    api = serve(fal_keys=[REVOKED_KEY, LIMITED_KEY]).client()
    with pytest.raises(openai.RateLimitError) as caught:
        api.images.generate(model="flux-dev", prompt="p")
    text = caught.value.response.text + str(dict(caught.value.response.headers))
    assert REVOKED_KEY not in text and LIMITED_KEY not in text
