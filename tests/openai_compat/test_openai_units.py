"""The pure parts of the OpenAI facade: size table, schema reading, model table, fal messages."""

from __future__ import annotations

import time

import pytest

from flask_fal_proxy.openai_compat import errors
from flask_fal_proxy.openai_compat.fal_input import plan_jobs
from flask_fal_proxy.openai_compat.jobs import Progress, QueueRunner, fal_message
from flask_fal_proxy.openai_compat.keys import KeyPool
from flask_fal_proxy.openai_compat.registry import parse_models
from flask_fal_proxy.openai_compat.schemas import ModelInputs, read_inputs
from flask_fal_proxy.openai_compat.sizes import size_input
from flask_fal_proxy.testing import FakeFal, openapi_document


def inputs_of(endpoint: str) -> ModelInputs:
    document = openapi_document(endpoint)
    assert document is not None
    return read_inputs(document, endpoint)


def test_each_kind_of_model_is_recognised_from_its_document() -> None:
    flux = inputs_of("fal-ai/flux/dev")
    assert flux.size_kind == "image_size_object" and flux.max_width == 14142
    assert flux.max_images == 4 and flux.sync_mode and flux.output_formats == ("jpeg", "png")
    assert inputs_of("fal-ai/fast-lightning-sdxl").size_kind == "image_size_preset"
    assert inputs_of("fal-ai/imagen4/preview").aspect_ratios == (
        "1:1",
        "16:9",
        "9:16",
        "3:4",
        "4:3",
    )
    assert inputs_of("fal-ai/flux-pro/v1.1-ultra").size_kind == "aspect_ratio"
    wh = inputs_of("fal-ai/fake-width-height")
    assert (wh.size_kind, wh.max_width, wh.max_images) == ("width_height", 2048, None)
    assert inputs_of("fal-ai/flux-pro/kontext").edit_field == "image_url"
    assert inputs_of("fal-ai/nano-banana/edit").edit_field == "image_urls"
    assert inputs_of("fal-ai/flux-pro/v1/fill").mask_field == "mask_url"
    assert inputs_of("fal-ai/flux/dev").edit_field is None


# The size table as implemented: model kind x OpenAI size -> fal input.
SIZE_TABLE = [
    ("fal-ai/flux/dev", (1024, 1024), {"image_size": {"width": 1024, "height": 1024}}),
    ("fal-ai/flux/dev", (1792, 1024), {"image_size": {"width": 1792, "height": 1024}}),
    ("fal-ai/fast-lightning-sdxl", (1024, 1024), {"image_size": "square_hd"}),
    ("fal-ai/fast-lightning-sdxl", (512, 512), {"image_size": "square"}),
    ("fal-ai/fast-lightning-sdxl", (256, 256), {"image_size": "square_hd"}),
    ("fal-ai/fast-lightning-sdxl", (768, 1024), {"image_size": "portrait_4_3"}),
    ("fal-ai/fast-lightning-sdxl", (1024, 1536), {"image_size": "portrait_4_3"}),
    ("fal-ai/fast-lightning-sdxl", (1024, 1792), {"image_size": "portrait_16_9"}),
    ("fal-ai/fast-lightning-sdxl", (1536, 1024), {"image_size": "landscape_4_3"}),
    ("fal-ai/fast-lightning-sdxl", (1792, 1024), {"image_size": "landscape_16_9"}),
    ("fal-ai/imagen4/preview", (1024, 1024), {"aspect_ratio": "1:1"}),
    ("fal-ai/imagen4/preview", (1792, 1024), {"aspect_ratio": "16:9"}),
    ("fal-ai/imagen4/preview", (1024, 1792), {"aspect_ratio": "9:16"}),
    ("fal-ai/imagen4/preview", (1536, 1024), {"aspect_ratio": "4:3"}),
    ("fal-ai/imagen4/preview", (1024, 1536), {"aspect_ratio": "3:4"}),
    ("fal-ai/flux-pro/v1.1-ultra", (1792, 1024), {"aspect_ratio": "16:9"}),
    ("fal-ai/flux-pro/v1.1-ultra", (1536, 1024), {"aspect_ratio": "3:2"}),
    ("fal-ai/flux-pro/v1.1-ultra", (2520, 1080), {"aspect_ratio": "21:9"}),
    ("fal-ai/fake-width-height", (1024, 768), {"width": 1024, "height": 768}),
    ("fal-ai/flux/dev", None, {}),
    ("fal-ai/imagen4/preview", None, {}),
]


@pytest.mark.parametrize(("endpoint", "size", "expected"), SIZE_TABLE)
def test_the_size_table(endpoint: str, size: tuple[int, int] | None, expected: dict) -> None:
    assert size_input(size, inputs_of(endpoint)) == expected


def test_a_model_without_a_size_input_ignores_size() -> None:
    inputs = ModelInputs(properties=frozenset({"prompt"}), size_kind=None)
    assert size_input((1024, 1024), inputs) == {}


def test_plans_split_n_by_the_schemas_maximum() -> None:
    plan = plan_jobs({"prompt": "p", "n": 10}, inputs_of("fal-ai/flux/dev"))
    assert plan.batches == (4, 4, 2)
    assert plan.job_input(2) == {"prompt": "p", "num_images": 2}
    form = plan_jobs({"prompt": "p", "n": "3"}, inputs_of("fal-ai/flux/dev"), from_form=True)
    assert form.batches == (3,)
    with pytest.raises(errors.OpenAIError):
        plan_jobs({"prompt": "p", "n": True}, inputs_of("fal-ai/flux/dev"))
    with pytest.raises(errors.OpenAIError) as caught:
        plan_jobs({"prompt": "p", "stream": True}, inputs_of("fal-ai/flux/dev"))
    assert caught.value.param == "stream"


def test_the_model_table_parses_the_seeds_string_form() -> None:
    table = parse_models(" flux-dev:fal-ai/flux/dev , sdxl:fal-ai/fast-sdxl,")
    assert {k: m.endpoint for k, m in table.items()} == {
        "flux-dev": "fal-ai/flux/dev",
        "sdxl": "fal-ai/fast-sdxl",
    }
    assert table["flux-dev"].app == "fal-ai/flux"
    with pytest.raises(ValueError, match="twice"):
        parse_models("a:fal-ai/x,a:fal-ai/y")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]},
            "prompt: field required",
        ),
        (
            {"detail": [{"loc": ["body", "image_size", "width"], "msg": "too big"}, {"msg": "x"}]},
            "image_size.width: too big; x",
        ),
        ({"detail": "Not enough credits"}, "Not enough credits"),
        ({"message": "Bad input"}, "Bad input"),
        ("not a dict", "no details"),
        ({"detail": [{}]}, "invalid value"),
    ],
)
def test_fal_errors_read_as_one_line(body: object, message: str) -> None:
    assert fal_message(body) == message


def test_the_key_pool_rotates_and_benches() -> None:
    pool = KeyPool(["a", "b", "c", "a", " "], bench_seconds=60)
    assert len(pool) == 3
    assert [pool.for_job()[0] for _ in range(4)] == ["a", "b", "c", "a"]
    pool.bench("b", 401)
    assert "b" not in pool.for_job()
    pool.bench("a", 403)
    pool.bench("c", 401)
    assert sorted(pool.for_job()) == ["a", "b", "c"]  # all benched: try them all
    with pytest.raises(ValueError):
        KeyPool([])


def test_a_failing_job_cancels_its_siblings() -> None:
    with FakeFal(key="runner-key", stream_delay=0.0) as fal:
        runner = QueueRunner(fal.session(), KeyPool(["runner-key"]), generation_timeout=10)
        progress = Progress()
        started = time.monotonic()
        with pytest.raises(errors.OpenAIError) as caught:
            runner.run_all(
                "fal-ai/imagen4/preview",
                "fal-ai/imagen4",
                [{"prompt": "[hang] a"}, {"prompt": "[fail] b"}, {"prompt": "[hang] c"}],
                progress,
            )

        assert caught.value.code == "generation_failed"
        assert progress.submitted and time.monotonic() - started < 5
        cancels = [c for c in fal.calls if c.method == "PUT"]
        assert len(cancels) == 2
