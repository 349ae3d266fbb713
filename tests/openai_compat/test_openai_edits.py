"""POST /v1/images/edits: OpenAI's multipart form to a fal editing model."""

from __future__ import annotations

import base64

import openai
import pytest
import requests

from flask_fal_proxy.testing import FakeFal
from flask_fal_proxy.testing.fal_openapi import png_image
from openai_compat.openai_support import ACCESS_KEY, submits

PNG = png_image(4, 4)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 60
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40


def _data_uri(kind: str, data: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def test_one_image_goes_to_image_url(api: openai.OpenAI, fal: FakeFal) -> None:
    result = api.images.edit(
        model="kontext", image=("in.png", PNG, "image/png"), prompt="add a hat", size="1024x1024"
    )

    assert result.data[0].url.startswith("https://v3.fal.media/")
    (submit,) = submits(fal, "fal-ai/flux-pro/kontext")
    assert submit.json() == {
        "prompt": "add a hat",
        "aspect_ratio": "1:1",
        "num_images": 1,
        "image_url": _data_uri("image/png", PNG),
    }


def test_several_images_go_to_image_urls(api: openai.OpenAI, fal: FakeFal) -> None:
    result = api.images.edit(
        model="nano-banana-edit",
        image=[("a.jpg", JPEG, "image/jpeg"), ("b.webp", WEBP, "image/webp")],
        prompt="merge them",
        n=2,
        output_format="webp",
        response_format="b64_json",
    )

    assert len(result.data) == 2 and all(d.b64_json for d in result.data)
    body = submits(fal)[0].json()
    assert body["image_urls"] == [_data_uri("image/jpeg", JPEG), _data_uri("image/webp", WEBP)]
    assert body["num_images"] == 2 and body["output_format"] == "webp"
    assert body["sync_mode"] is True


def test_a_mask_goes_to_mask_url(api: openai.OpenAI, fal: FakeFal) -> None:
    api.images.edit(
        model="flux-fill",
        image=("in.png", PNG, "image/png"),
        mask=("mask.png", PNG, "image/png"),
        prompt="fill",
    )

    body = submits(fal)[0].json()
    assert body["image_url"] == body["mask_url"] == _data_uri("image/png", PNG)


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"model": "flux-dev"}, "model"),
        ({"image": ("x.txt", b"not an image", "text/plain")}, "image"),
        ({"image": [("a.png", PNG, "image/png"), ("b.png", PNG, "image/png")]}, "image"),
        ({"mask": ("m.png", PNG, "image/png")}, "mask"),
        ({"size": "big"}, "size"),
    ],
)
def test_edits_fal_cannot_do_are_400s_naming_the_field(
    api: openai.OpenAI, fal: FakeFal, kwargs: dict[str, object], param: str
) -> None:
    kwargs = {"model": "kontext", "image": ("in.png", PNG, "image/png"), "prompt": "p", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        api.images.edit(**kwargs)  # type: ignore[arg-type]

    assert caught.value.body["param"] == param
    assert submits(fal) == []


def test_an_edit_needs_an_image_and_a_form(served) -> None:
    auth = {"Authorization": f"Bearer {ACCESS_KEY}"}
    missing = requests.post(
        f"{served.url}/v1/images/edits",
        files={"prompt": (None, "p"), "model": (None, "kontext")},
        headers=auth,
        timeout=10,
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "image"
    as_json = requests.post(
        f"{served.url}/v1/images/edits", json={"prompt": "p"}, headers=auth, timeout=10
    )
    assert as_json.status_code == 415
