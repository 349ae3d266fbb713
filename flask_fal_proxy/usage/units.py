"""How many fal billable units a call's input will cost, before it is sent.

fal reports the units it billed only with the result; a budget has to be
held before the call starts, so the input is read the way fal bills it:
images count ``num_images``, megapixels the image size (each image rounded
up to a whole megapixel, as fal bills them) times ``num_images``, seconds
the requested ``duration``. Anything else is one unit per requested image.
The settlement replaces the estimate with what fal reports.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..fal_protocol import IMAGE_SIZE_PRESETS

__all__ = ["estimate_units", "fields_read", "image_pixels"]

# The size fal's image models commonly default to when no size is sent.
_DEFAULT_SIZE = IMAGE_SIZE_PRESETS["landscape_4_3"]
# A bound on what one input can claim, so a silly number cannot reserve a fortune.
_MAX_IMAGES = 100
# fal's megapixel is 1024 x 1024 pixels: a square_hd image is one.
_MEGAPIXEL = 1024 * 1024
_MAX_SIDE = 16384
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*s?\s*")


def _count(payload: Any) -> int:
    value = payload.get("num_images", 1) if isinstance(payload, dict) else 1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        return 1
    return min(int(value), _MAX_IMAGES)


def _side(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
        return default
    return min(int(value), _MAX_SIDE)


def image_pixels(payload: Any) -> tuple[int, int]:
    """The width and height one image of this input will have."""
    if not isinstance(payload, dict):
        return _DEFAULT_SIZE
    size = payload.get("image_size")
    if isinstance(size, str):
        return IMAGE_SIZE_PRESETS.get(size, _DEFAULT_SIZE)
    if isinstance(size, dict):
        return _side(size.get("width"), _DEFAULT_SIZE[0]), _side(
            size.get("height"), _DEFAULT_SIZE[1]
        )
    if "width" in payload or "height" in payload:
        return _side(payload.get("width"), _DEFAULT_SIZE[0]), _side(
            payload.get("height"), _DEFAULT_SIZE[1]
        )
    return _DEFAULT_SIZE


def _seconds(payload: Any) -> float:
    value = payload.get("duration") if isinstance(payload, dict) else None
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        value = float(match[1]) if match else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return 1.0
    return min(float(value), 3600.0)


def _kind(unit: str) -> str:
    kind = unit.lower().rstrip("s")
    if kind in ("megapixel", "mp"):
        return "megapixel"
    return "second" if kind in ("second", "sec") else "image"


_FIELDS = {
    "megapixel": ("num_images", "image_size", "width", "height"),
    "second": ("duration",),
    "image": ("num_images",),
}


def fields_read(unit: str) -> tuple[str, ...]:
    """The input fields :func:`estimate_units` reads for ``unit``: without them, the defaults."""
    return _FIELDS[_kind(unit)]


def estimate_units(unit: str, payload: Any) -> float:
    """The units fal will bill for ``payload`` at an endpoint priced per ``unit``."""
    kind = _kind(unit)
    if kind == "megapixel":
        width, height = image_pixels(payload)
        return _count(payload) * math.ceil(width * height / _MEGAPIXEL)
    if kind == "second":
        return _seconds(payload)
    return float(_count(payload))
