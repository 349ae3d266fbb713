"""How many fal billable units a call's input will cost, before it is sent.

fal reports the units it billed only with the result; a budget has to be
held before the call starts, so the input is read the way fal bills it:
images count ``num_images``, megapixels the image size (each image rounded
up to a whole megapixel, as fal bills them) times ``num_images``, seconds
the requested ``duration``. Anything else is one unit per requested image.
The settlement replaces the estimate with what fal reports.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

from ..fal_protocol import IMAGE_SIZE_PRESETS

__all__ = ["estimate_units", "fields_read", "image_pixels", "parse_json", "read_input"]

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


# Above this, an input is not parsed whole to be estimated: its fields are
# found by a scan (a data URI image can make a body tens of MiB, and building
# it would cost what the body check was made to avoid).
PARSED_BODY_LIMIT = 64 * 1024
_FIELD = re.compile(
    rb'"(num_images|duration|width|height)"\s*:\s*(-?[0-9][0-9.eE+-]{0,30})'
    rb'|"(image_size)"\s*:\s*("[A-Za-z0-9_]{1,40}"|\{[^{}]{0,200}\})'
)
# An escaped printable ASCII character: never needed in JSON, so a key
# written that way (``"num_\u0069mages"``) is one a scan must not miss.
_ESCAPED_ASCII = re.compile(rb"\\u00[2-7][0-9a-fA-F]")


@functools.lru_cache(maxsize=128)
def _names_read(unit: str) -> re.Pattern[bytes]:
    alternatives = b"|".join(name.encode() for name in fields_read(unit))
    return re.compile(rb'"(?:' + alternatives + rb')"')


def parse_json(body: bytes | None) -> Any:
    """A body already checked and bounded (a request, a short answer) as JSON, or None."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def read_input(unit: str, body: bytes | None) -> Any:
    """What :func:`estimate_units` at ``unit`` needs of a request body, as cheaply as it can.

    A body in which no field the estimate reads appears as written, and
    which has no backslash (so no escaped key either), has none: the
    defaults apply and nothing is parsed. A small body is parsed; a large
    one is scanned (see :func:`_scan`).
    """
    if not body:
        return None
    if b"\\" not in body and _names_read(unit).search(body) is None:
        return None
    if len(body) <= PARSED_BODY_LIMIT or _ESCAPED_ASCII.search(body) is not None:
        return parse_json(body)
    return _scan(body)


def _scan(body: bytes) -> dict[str, Any]:
    """The fields an estimate reads, found in a large body without building it.

    A name given twice takes the value that costs most: a JSON parser keeps
    the last, and an input must not be estimated at one image and run at
    four. Matches inside strings cannot happen (a quote in a string is
    escaped), so a scan can over-count, never under-count.
    """
    found: dict[str, Any] = {}
    for match in _FIELD.finditer(body):
        name = (match[1] or match[3]).decode()
        try:
            value = json.loads(match[2] or match[4])
        except ValueError:
            continue
        if name in found:
            value = _costlier(name, found[name], value)
        found[name] = value
    return found


def _costlier(name: str, old: Any, new: Any) -> Any:
    if name == "image_size":
        old_w, old_h = image_pixels({"image_size": old})
        new_w, new_h = image_pixels({"image_size": new})
        return new if new_w * new_h > old_w * old_h else old
    numbers = [v for v in (old, new) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return max(numbers) if numbers else new
