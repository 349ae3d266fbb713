"""How an OpenAI ``size`` ("WxH" or "auto") becomes the model's own size input.

OpenAI clients speak in pixels; fal models take whatever their schema says,
and the nearest faithful value is chosen per kind:

- ``image_size`` that accepts ``{width, height}``: the exact size;
- ``image_size`` presets only: the preset of exactly that size, else the
  one nearest in aspect ratio;
- an ``aspect_ratio`` enum: the allowed ratio nearest to W/H, measured as
  ``|log(W/H) - log(ratio)|`` so that 2:1 and 1:2 are equally far from 1:1
  (a reduced fraction like "7:4" is no value such an enum accepts);
- integer ``width`` and ``height``: those.

``auto`` or no size sends nothing, leaving the model's default. A model with
no size input at all ignores the size, as OpenAI's own models ignore the
sizes they do not support in ``auto`` mode, rather than refusing clients
that always send one.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..fal_protocol import IMAGE_SIZE_PRESETS
from . import errors
from .schemas import ModelInputs

__all__ = ["parse_size", "size_input"]

# Beyond any model's output; a sanity bound where the schema states none.
MAX_SIDE = 16384
_SIZE = re.compile(r"([0-9]{1,6})x([0-9]{1,6})")


def parse_size(value: Any) -> tuple[int, int] | None:
    """``(width, height)``, or ``None`` for ``auto`` or no size; 400 if malformed."""
    if value is None or value == "auto":
        return None
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise errors.invalid_request(
            "size must be 'auto' or 'WIDTHxHEIGHT' in pixels, like '1024x1024'.", "size"
        )
    width, height = int(match[1]), int(match[2])
    if width == 0 or height == 0:
        raise errors.invalid_request("size must have a width and height above zero.", "size")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise errors.invalid_request(f"size may be at most {MAX_SIDE} pixels a side.", "size")
    return width, height


def _distance(width: int, height: int, ratio_w: float, ratio_h: float) -> float:
    return abs(math.log(width / height) - math.log(ratio_w / ratio_h))


def _nearest_preset(width: int, height: int, presets: tuple[str, ...]) -> str | None:
    known = [p for p in presets if p in IMAGE_SIZE_PRESETS]
    for preset in known:
        if IMAGE_SIZE_PRESETS[preset] == (width, height):
            return preset
    # Ties (square_hd and square for a square) go to the larger preset.
    return min(
        known,
        key=lambda p: (_distance(width, height, *IMAGE_SIZE_PRESETS[p]), -IMAGE_SIZE_PRESETS[p][0]),
        default=None,
    )


def _nearest_ratio(width: int, height: int, ratios: tuple[str, ...]) -> str:
    def distance(ratio: str) -> float:
        w, h = ratio.split(":")
        return _distance(width, height, int(w), int(h))

    return min(ratios, key=distance)


def _check_limits(width: int, height: int, inputs: ModelInputs) -> None:
    if inputs.max_width is not None and width > inputs.max_width:
        raise errors.invalid_request(
            f"size: this model's width is at most {inputs.max_width} pixels.", "size"
        )
    if inputs.max_height is not None and height > inputs.max_height:
        raise errors.invalid_request(
            f"size: this model's height is at most {inputs.max_height} pixels.", "size"
        )


def size_input(size: tuple[int, int] | None, inputs: ModelInputs) -> dict[str, Any]:
    """The fal input fields that carry ``size`` for this model (empty for ``auto``)."""
    if size is None or inputs.size_kind is None:
        return {}
    width, height = size
    kind = inputs.size_kind
    if kind == "image_size_object":
        _check_limits(width, height, inputs)
        return {"image_size": {"width": width, "height": height}}
    if kind == "image_size_preset":
        preset = _nearest_preset(width, height, inputs.presets)
        return {"image_size": preset} if preset else {}
    if kind == "aspect_ratio":
        return {"aspect_ratio": _nearest_ratio(width, height, inputs.aspect_ratios)}
    _check_limits(width, height, inputs)
    return {"width": width, "height": height}
