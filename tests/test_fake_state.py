"""The fakes remember a bounded amount, however long they run and whatever they are sent.

``fal-openai-proxy --offline`` and the example app run a fake for hours; one
edit of four 16 MiB images once grew the offline server from 47 to 596 MiB
because the fake kept every body and every job's whole input.
"""

from __future__ import annotations

import base64
import gc
import tracemalloc

import pytest
import requests

from flask_fal_proxy.testing import FakeAnthropic, FakeElevenLabs, FakeFal, loopback_session

KEY = "fake-state-key"
MiB = 1 << 20


def _fal(fake: FakeFal) -> requests.Session:
    session = loopback_session(fake.port)
    session.headers["Authorization"] = f"Key {KEY}"
    return session


def test_calls_keep_the_last_max_calls_oldest_first() -> None:
    with FakeFal(key=KEY, stream_delay=0.0, max_calls=3) as fake:
        fal = _fal(fake)
        for i in range(5):
            fal.post(f"https://fal.run/fal-ai/flux/c{i}", json={"prompt": str(i)}, timeout=5)
        assert [c.path for c in fake.calls] == [
            "/fal-ai/flux/c2",
            "/fal-ai/flux/c3",
            "/fal-ai/flux/c4",
        ]
        assert fake.calls[-1].json() == {"prompt": "4"}


def test_the_default_keeps_a_hundred_calls() -> None:
    with FakeFal(key=KEY, stream_delay=0.0) as fake:
        fal = _fal(fake)
        for i in range(130):
            fal.post("https://fal.run/fal-ai/flux/dev", json={"prompt": str(i)}, timeout=5)
        assert len(fake.calls) == 100
        assert fake.calls[0].json() == {"prompt": "30"}


def test_max_calls_must_be_a_count() -> None:
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="max_calls"):
            FakeFal(key=KEY, max_calls=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_jobs"):
        FakeFal(key=KEY, max_jobs=0)


def test_big_edits_leave_nothing_behind_when_nothing_is_recorded() -> None:
    """What the offline server runs: three 16 MiB jobs, answered, then forgotten.

    The cyclic collector stays off, as it mostly is in a quiet server: a body
    reachable only from a reference cycle (a request and its environ) would stay.
    """
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + bytes(12 * MiB)).decode()
    with FakeFal(key=KEY, stream_delay=0.0, inline_images=True, max_calls=0) as fake:
        fal = _fal(fake)
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            results = []
            for i in range(3):
                body = {"prompt": f"edit {i}", "image_urls": [image], "num_images": 1}
                job = fal.post("https://queue.fal.run/fal-ai/flux/dev", json=body, timeout=30)
                base = f"https://queue.fal.run/fal-ai/flux/requests/{job.json()['request_id']}"
                for _ in range(3):
                    fal.get(f"{base}/status", timeout=5)
                results.append(fal.get(base, timeout=5).json())
            upload = fal.put(f"{fake.base_url}/__upload/t/big.png", data=bytes(16 * MiB))
            assert upload.status_code == 200
            del body, job, upload  # the client side keeps the bodies it sent
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gc.enable()
    assert [r["prompt"] for r in results] == ["edit 0", "edit 1", "edit 2"]
    assert fake.calls == [] and fake.uploads == {}
    assert kept < 2 * MiB, f"the fake kept {kept / MiB:.1f} MiB after three 16 MiB jobs"


def test_a_job_keeps_only_what_its_answer_needs() -> None:
    with FakeFal(key=KEY, stream_delay=0.0, media_urls=True) as fake:
        fal = _fal(fake)
        body = {
            "prompt": "p" * 50_000,
            "image_size": {"width": 640, "height": 480, "junk": "x" * 1000},
            "image_urls": ["data:image/png;base64," + "A" * 100_000],
            "num_images": 2,
        }
        job = fal.post("https://queue.fal.run/fal-ai/flux/dev", json=body, timeout=5).json()
        base = f"https://queue.fal.run/fal-ai/flux/requests/{job['request_id']}"
        for _ in range(3):
            fal.get(f"{base}/status", timeout=5)
        result = fal.get(base, timeout=5).json()
    assert len(result["prompt"]) == 10_000
    (kept,) = fake._jobs.values()
    assert kept.input == {
        "prompt": "p" * 10_000,
        "image_size": {"width": 640, "height": 480},
        "num_images": 2,
    }


def test_the_oldest_jobs_go_beyond_max_jobs() -> None:
    with FakeFal(key=KEY, stream_delay=0.0, max_jobs=2) as fake:
        fal = _fal(fake)
        ids = [
            fal.post("https://queue.fal.run/fal-ai/flux/dev", json={"prompt": "p"}).json()[
                "request_id"
            ]
            for _ in range(3)
        ]
        statuses = [
            fal.get(f"https://queue.fal.run/fal-ai/flux/requests/{i}/status").status_code
            for i in ids
        ]
    assert statuses == [404, 200, 200]


def test_the_provider_fakes_keep_the_last_calls_and_answers() -> None:
    with FakeAnthropic(key=KEY, stream_delay=0.0, max_calls=2) as anthropic:
        session = anthropic.session()
        for i in range(3):
            session.post(
                "https://api.anthropic.com/v1/messages",
                headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
                json={
                    "model": "m",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": f"{i}"}],
                },
                timeout=5,
            )
        assert [c.json()["messages"][0]["content"] for c in anthropic.calls] == ["1", "2"]
    with FakeElevenLabs(key=KEY, stream_delay=0.0, max_calls=1) as eleven:
        session = eleven.session()
        answers = [
            session.post(
                "https://api.elevenlabs.io/v1/text-to-speech/v",
                headers={"xi-api-key": KEY},
                json={"text": text},
                timeout=5,
            ).content
            for text in ("one", "two words")
        ]
        assert eleven.sent == [answers[-1]] and len(eleven.calls) == 1
