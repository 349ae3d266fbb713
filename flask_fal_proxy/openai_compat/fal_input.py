"""Which fal input an OpenAI images request becomes, and in how many jobs.

Keys are sorted into three kinds. OpenAI's own keys are translated
(``n``, ``size``, ``response_format``, ``output_format``). OpenAI-only keys
that fal has no meaning for (``quality``, ``style``, ``background``,
``moderation``, ``user``, ``safety_identifier``) are accepted and dropped, so
stock clients work unchanged. Every other key (the SDK's ``extra_body``)
goes to fal only if the model's input schema names it; an unknown key is a
400 naming it rather than a parameter silently lost.

A job makes at most the schema's ``num_images`` maximum, so a larger ``n``
is split into several jobs run side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .schemas import ModelInputs
from .sizes import parse_size, size_input

__all__ = ["Plan", "plan_jobs"]

MAX_N = 10
OPENAI_ONLY = frozenset(
    {"quality", "style", "background", "moderation", "user", "safety_identifier"}
)
TRANSLATED = frozenset(
    {"prompt", "model", "n", "size", "response_format", "output_format", "stream"}
)
# Inputs the translation sets itself; a client sets them through OpenAI's keys.
RESERVED = {"num_images": "n", "sync_mode": "response_format"}
RESPONSE_FORMATS = ("url", "b64_json")
OUTPUT_FORMATS = ("png", "jpeg", "webp")


@dataclass(frozen=True)
class Plan:
    """The fal input shared by every job, and how many images each job makes."""

    prompt: str
    fal_input: dict[str, Any]
    batches: tuple[int, ...]
    b64: bool
    inline: bool  # images come back as data URIs (sync_mode)
    per_job_count: bool = field(default=True)  # whether num_images is sent

    def job_input(self, count: int) -> dict[str, Any]:
        job = dict(self.fal_input)
        if self.per_job_count:
            job["num_images"] = count
        return job


def _count(value: Any, from_form: bool) -> int:
    if value is None:
        return 1
    if from_form and isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_N:
        raise errors.invalid_request(f"n must be an integer from 1 to {MAX_N}.", "n")
    return value


def _batches(n: int, max_images: int | None) -> tuple[int, ...]:
    per_job = max_images or 1
    full, rest = divmod(n, per_job)
    return (per_job,) * full + ((rest,) if rest else ())


def plan_jobs(fields: Mapping[str, Any], inputs: ModelInputs, *, from_form: bool = False) -> Plan:
    """Translate an OpenAI images request for a model with ``inputs``; 400 on a bad field."""
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise errors.invalid_request("prompt is required and must be a non-empty string.", "prompt")
    stream = fields.get("stream")
    if stream not in (None, False) and not (from_form and stream == "false"):
        raise errors.invalid_request("Streaming image generation is not supported.", "stream")
    n = _count(fields.get("n"), from_form)
    response_format = fields.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise errors.invalid_request(
            "response_format must be 'url' or 'b64_json'.", "response_format"
        )
    fal_input = _passed_through(fields, inputs)
    fal_input["prompt"] = prompt
    fal_input.update(size_input(parse_size(fields.get("size")), inputs))
    fal_input.update(_output_format(fields.get("output_format"), inputs))

    b64 = response_format == "b64_json"
    inline = b64 and inputs.sync_mode
    if inline:
        fal_input["sync_mode"] = True
    return Plan(
        prompt=prompt,
        fal_input=fal_input,
        batches=_batches(n, inputs.max_images),
        b64=b64,
        inline=inline,
        per_job_count=inputs.max_images is not None,
    )


def _passed_through(fields: Mapping[str, Any], inputs: ModelInputs) -> dict[str, Any]:
    """The fields that go to fal as they are: those the model's schema names.

    A key fal would never see is a 400 naming it, not a parameter silently
    lost; the inputs the translation sets itself name the OpenAI key to use.
    """
    fal_input: dict[str, Any] = {}
    for key, value in fields.items():
        if key in TRANSLATED or key in OPENAI_ONLY:
            continue
        if key in RESERVED:
            raise errors.invalid_request(f"Set {key} through '{RESERVED[key]}'.", key)
        if key not in inputs.properties:
            raise errors.invalid_request(f"This model has no input named '{key[:100]}'.", key)
        fal_input[key] = value
    return fal_input


def _output_format(output_format: Any, inputs: ModelInputs) -> dict[str, Any]:
    """fal's ``output_format`` input, if the client asked for one the model can make.

    A model without an ``output_format`` input gets none: OpenAI's value is
    checked, so stock clients see the same 400 everywhere, then dropped.
    """
    if output_format is None:
        return {}
    if output_format not in OUTPUT_FORMATS:
        raise errors.invalid_request(
            "output_format must be 'png', 'jpeg' or 'webp'.", "output_format"
        )
    if inputs.output_formats is None:
        return {}
    if output_format not in inputs.output_formats:
        allowed = ", ".join(inputs.output_formats)
        raise errors.invalid_request(
            f"This model's output_format is one of: {allowed}.", "output_format"
        )
    return {"output_format": output_format}
