"""What one request may hold: edits encode their images once, b64_json answers have a budget.

fal is ``fal_faults.FaultyFal``, which reads and drops request bodies, so
``tracemalloc`` here measures the facade (and Werkzeug's form parsing), not
the fake. Before, every job of an edit serialized every image again: four
16 MiB images with ``n=10`` (three jobs) peaked near ten times the upload.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import flask
import pytest
import requests

from flask_fal_proxy.openai_compat import create_openai_blueprint, media
from flask_fal_proxy.testing import loopback_session
from flask_fal_proxy.testing.fal_openapi import png_image
from openai_compat.fal_faults import FaultyFal
from openai_compat.openai_support import ACCESS_KEY, FAL_KEY, Served

MODELS = {"nano-banana-edit": "fal-ai/nano-banana/edit", "sdxl": "fal-ai/fast-lightning-sdxl"}
AUTH = {"Authorization": f"Bearer {ACCESS_KEY}"}
MiB = 1024 * 1024


@pytest.fixture
def facade(faulty: FaultyFal, serve_app: Callable[..., Served]) -> Served:
    app = flask.Flask("facade-memory")
    app.register_blueprint(
        create_openai_blueprint(
            models=MODELS,
            access_keys=[ACCESS_KEY],
            fal_keys=[FAL_KEY],
            session=loopback_session(faulty.port),
        )
    )
    return serve_app(app, Served)


def multipart(fields: dict[str, str], images: list[bytes]) -> tuple[bytes, str]:
    boundary = "memory-test-boundary-5f2c"
    parts = []
    for name, value in fields.items():
        parts.append(
            f"--{boundary}\r\nContent-Disposition: form-data; "
            f'name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for index, image in enumerate(images):
        parts.append(
            (
                f"--{boundary}\r\nContent-Disposition: form-data; "
                f'name="image[]"; filename="{index}.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
        )
        parts.append(image)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_an_edit_holds_its_images_once_whatever_the_number_of_jobs(
    faulty: FaultyFal, facade: Served
) -> None:
    # Four images as large as the form's 64 MiB allows.
    image = png_image() + bytes(16 * MiB - 1024 - len(png_image()))
    body, content_type = multipart(
        {"model": "nano-banana-edit", "prompt": "add a hat", "n": "10"}, [image] * 4
    )
    upload = 4 * len(image)
    del image
    tracemalloc.start()
    try:
        answer = requests.post(
            f"{facade.url}/v1/images/edits",
            data=body,
            headers={**AUTH, "Content-Type": content_type},
            timeout=120,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert answer.status_code == 200, answer.text
    submits = faulty.stages("submit")
    assert len(submits) == 3  # n=10 on a model that makes at most 4 per job
    # Each job carries every image, base64 in JSON: about 4/3 of the upload.
    assert all(s.body_bytes > upload * 4 / 3 for s in submits)
    print(f"upload {upload / MiB:.0f} MiB, peak {peak / MiB:.0f} MiB ({peak / upload:.2f}x)")
    assert peak < 2.5 * upload


def test_b64_json_images_are_fetched_side_by_side(faulty: FaultyFal, facade: Served) -> None:
    faulty.media_delay = 0.3
    answer = requests.post(
        f"{facade.url}/v1/images/generations",
        json={"model": "sdxl", "prompt": "p", "n": 8, "response_format": "b64_json"},
        headers=AUTH,
        timeout=60,
    )

    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == 8
    assert 1 < faulty.media_most_at_once <= 4  # media.PARALLEL_DOWNLOADS


def test_b64_json_images_beyond_the_answer_budget_are_a_502_without_retry(
    faulty: FaultyFal, facade: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    faulty.media_image = png_image() + bytes(1000)
    monkeypatch.setattr(media, "MAX_B64_TOTAL_BYTES", 3 * len(faulty.media_image), raising=False)
    started = time.monotonic()
    answer = requests.post(
        f"{facade.url}/v1/images/generations",
        json={"model": "sdxl", "prompt": "p", "n": 8, "response_format": "b64_json"},
        headers=AUTH,
        timeout=60,
    )

    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "image_unavailable"
    assert "together are larger" in answer.json()["error"]["message"]
    assert answer.headers["x-should-retry"] == "false"
    assert time.monotonic() - started < 10
