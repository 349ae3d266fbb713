"""POST /v1/images/generations through the official ``openai`` SDK, against a fake fal."""

from __future__ import annotations

import base64
import json

import openai
import pytest
import requests

from flask_fal_proxy.testing import FakeFal
from openai_compat.openai_support import ACCESS_KEY, submits

PNG = b"\x89PNG\r\n\x1a\n"


def test_an_image_url_from_fal_media_for_an_exact_size(api: openai.OpenAI, fal: FakeFal) -> None:
    result = api.images.generate(model="flux-dev", prompt="a lighthouse", size="1792x1024")

    assert isinstance(result.created, int) and result.created > 1_700_000_000
    assert len(result.data) == 1
    assert result.data[0].url.startswith("https://v3.fal.media/files/")
    assert result.data[0].b64_json is None and result.data[0].revised_prompt is None
    (submit,) = submits(fal)
    assert submit.json() == {
        "prompt": "a lighthouse",
        "image_size": {"width": 1792, "height": 1024},
        "num_images": 1,
    }


@pytest.mark.parametrize(
    ("model", "size", "sent"),
    [
        ("flux-dev", "1024x1536", {"image_size": {"width": 1024, "height": 1536}}),
        ("sdxl-lightning", "512x512", {"image_size": "square"}),
        ("sdxl-lightning", "1792x1024", {"image_size": "landscape_16_9"}),
        ("imagen4", "1792x1024", {"aspect_ratio": "16:9"}),
        ("flux-ultra", "1024x1536", {"aspect_ratio": "2:3"}),
        ("width-height", "1024x768", {"width": 1024, "height": 768}),
        ("imagen4", "auto", {}),
    ],
)
def test_size_becomes_the_models_own_size_input(
    api: openai.OpenAI, fal: FakeFal, model: str, size: str, sent: dict[str, object]
) -> None:
    api.images.generate(model=model, prompt="p", size=size)  # type: ignore[arg-type]

    body = submits(fal)[0].json()
    size_keys = {"image_size", "aspect_ratio", "width", "height"}
    assert {k: v for k, v in body.items() if k in size_keys} == sent


@pytest.mark.parametrize(
    ("model", "size", "why"),
    [
        ("flux-dev", "1024", "'WIDTHxHEIGHT'"),
        ("flux-dev", "0x1024", "above zero"),
        ("flux-dev", "1024x-1", "'WIDTHxHEIGHT'"),
        ("flux-dev", "15000x1024", "at most 14142"),
        ("width-height", "4096x1024", "at most 2048"),
        ("imagen4", "99999x1", "at most 16384"),
    ],
)
def test_a_bad_size_is_a_400_naming_size(
    api: openai.OpenAI, fal: FakeFal, model: str, size: str, why: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.images.generate(model=model, prompt="p", size=size)  # type: ignore[arg-type]

    error = caught.value.body
    assert error["param"] == "size" and error["type"] == "invalid_request_error"
    assert why in error["message"]
    assert submits(fal) == []


def test_n_beyond_a_jobs_maximum_fans_out_into_parallel_jobs(
    api: openai.OpenAI, fal: FakeFal
) -> None:
    result = api.images.generate(model="sdxl-lightning", prompt="five cats", n=5)

    assert len(result.data) == 5
    assert sorted(s.json()["num_images"] for s in submits(fal)) == [1, 2, 2]
    assert len({d.url for d in result.data}) == 5


def test_a_model_without_num_images_runs_one_job_per_image(
    api: openai.OpenAI, fal: FakeFal
) -> None:
    result = api.images.generate(model="width-height", prompt="two", n=2, size="512x512")

    assert len(result.data) == 2
    bodies = [s.json() for s in submits(fal)]
    assert bodies == [{"prompt": "two", "width": 512, "height": 512}] * 2


def test_b64_json_uses_sync_mode_when_the_model_has_it(api: openai.OpenAI, fal: FakeFal) -> None:
    result = api.images.generate(model="flux-dev", prompt="inline", response_format="b64_json", n=2)

    assert [base64.b64decode(d.b64_json)[:8] for d in result.data] == [PNG, PNG]
    assert all(d.url is None for d in result.data)
    assert submits(fal)[0].json()["sync_mode"] is True
    assert not [c for c in fal.calls if c.host.endswith("fal.media")]


def test_b64_json_downloads_from_fal_media_when_the_model_cannot_inline(
    api: openai.OpenAI, fal: FakeFal
) -> None:
    result = api.images.generate(
        model="sdxl-lightning", prompt="fetched", response_format="b64_json"
    )

    assert base64.b64decode(result.data[0].b64_json)[:8] == PNG
    assert "sync_mode" not in submits(fal)[0].json()
    (download,) = [c for c in fal.calls if c.host == "v3.fal.media"]
    assert download.method == "GET" and "Authorization" not in download.headers


def test_extra_body_keys_the_schema_knows_go_to_fal_and_openai_only_keys_are_dropped(
    api: openai.OpenAI, fal: FakeFal
) -> None:
    api.images.generate(
        model="flux-dev",
        prompt="p",
        quality="hd",
        style="vivid",
        user="someone",
        output_format="png",
        extra_body={"seed": 7, "guidance_scale": 2.5},
    )

    assert submits(fal)[0].json() == {
        "prompt": "p",
        "seed": 7,
        "guidance_scale": 2.5,
        "output_format": "png",
        "num_images": 1,
    }


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"extra_body": {"bogus": 1}}, "bogus"),
        ({"extra_body": {"num_images": 3}}, "num_images"),
        ({"output_format": "webp"}, "output_format"),
        ({"n": 11}, "n"),
        ({"response_format": "svg"}, "response_format"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_fields_fal_cannot_take_are_400s_naming_them(
    api: openai.OpenAI, fal: FakeFal, kwargs: dict[str, object], param: str
) -> None:
    kwargs = {"model": "flux-dev", "prompt": "p", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        api.images.generate(**kwargs)  # type: ignore[arg-type]

    assert caught.value.body["param"] == param
    assert submits(fal) == []


def test_a_rewritten_prompt_comes_back_as_revised_prompt(api: openai.OpenAI) -> None:
    result = api.images.generate(
        model="flux-ultra", prompt="a fox", extra_body={"enhance_prompt": True}
    )

    assert result.data[0].revised_prompt == "a fox, richly detailed"


def test_model_is_required_only_when_several_are_configured(serve, fal: FakeFal) -> None:
    several = serve().client()
    with pytest.raises(openai.BadRequestError) as caught:
        several.images.generate(prompt="which model?")
    assert caught.value.body["param"] == "model"

    one = serve(models="only:fal-ai/imagen4/preview").client()
    assert len(one.images.generate(prompt="the only one").data) == 1
    assert submits(fal)[0].path == "/fal-ai/imagen4/preview"


def test_an_unknown_model_is_a_404_model_not_found(api: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        api.images.generate(model="dall-e-3", prompt="p")
    assert caught.value.code == "model_not_found"
    assert caught.value.body["param"] == "model"


def test_bad_json_is_an_openai_shaped_400(served) -> None:
    answer = requests.post(
        f"{served.url}/v1/images/generations",
        data=b'{"prompt": NaN}',
        headers={"Authorization": f"Bearer {ACCESS_KEY}", "Content-Type": "application/json"},
        timeout=10,
    )

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
    assert error["param"] is None and "NaN" in error["message"]


def test_a_non_json_body_is_a_415(served) -> None:
    answer = requests.post(
        f"{served.url}/v1/images/generations",
        data=b"prompt=p",
        headers={"Authorization": f"Bearer {ACCESS_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 415
    assert answer.json()["error"]["code"] == "unsupported_media_type"


def test_fal_validation_errors_are_joined_into_a_readable_400(
    api: openai.OpenAI, fal: FakeFal
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.images.generate(model="imagen4", prompt="[reject] this")

    message = caught.value.body["message"]
    assert message == (
        "prompt: contains a word this model refuses; seed: Input should be a valid integer"
    )
    assert "[object Object]" not in json.dumps(caught.value.body)


def test_a_failed_job_is_a_502_with_fals_message_and_is_not_retried(serve, fal: FakeFal) -> None:
    api = serve().client(max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        api.images.generate(model="flux-dev", prompt="[fail] please")

    assert caught.value.status_code == 502
    assert caught.value.code == "generation_failed"
    assert "out of GPU memory" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(submits(fal)) == 1


def test_a_job_still_running_at_the_timeout_is_cancelled_and_answered_504(
    serve, fal: FakeFal
) -> None:
    api = serve(generation_timeout=0.6).client(max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        api.images.generate(model="flux-dev", prompt="[hang] forever")

    assert caught.value.status_code == 504
    assert caught.value.code == "generation_timeout"
    assert caught.value.response.headers["x-should-retry"] == "false"
    (submit,) = submits(fal)
    cancels = [c for c in fal.calls if c.method == "PUT" and c.path.endswith("/cancel")]
    assert len(cancels) == 1
    assert cancels[0].headers["Authorization"] == submit.headers["Authorization"]


def test_every_job_of_a_fan_out_is_cancelled_at_the_timeout(serve, fal: FakeFal) -> None:
    api = serve(generation_timeout=0.6).client()
    with pytest.raises(openai.InternalServerError) as caught:
        api.images.generate(model="sdxl-lightning", prompt="[hang] both", n=4)

    assert caught.value.status_code == 504
    jobs = {s.path for s in submits(fal)}
    cancels = [c for c in fal.calls if c.method == "PUT" and c.path.endswith("/cancel")]
    assert len(submits(fal)) == 2 and len(cancels) == 2 and jobs == {"/fal-ai/fast-lightning-sdxl"}


def test_the_sdk_does_retry_a_failure_before_any_submit(serve, fal: FakeFal) -> None:
    # Nothing was submitted, so retrying costs nothing: no x-should-retry.
    api = serve(fal_keys=["fal-unknown-key"]).client(max_retries=1)
    with pytest.raises(openai.InternalServerError) as caught:
        api.images.generate(model="flux-dev", prompt="p")

    assert caught.value.code == "fal_keys_refused"
    assert "x-should-retry" not in caught.value.response.headers
    assert len(submits(fal)) == 2


def test_an_oversized_body_is_a_413_before_fal_is_asked(served, fal: FakeFal) -> None:
    answer = requests.post(
        f"{served.url}/v1/images/generations",
        json={"model": "flux-dev", "prompt": "x" * (1024 * 1024)},
        headers={"Authorization": f"Bearer {ACCESS_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert fal.calls == []
