"""Image bytes in and out: uploads for edits, downloads for ``b64_json``.

Downloads are made only from fal's media hosts (``fal.media`` and its
subdomains), over https, without a key, without redirects and under a size
cap: a result is data fal produced, and a URL in it must not make this
server fetch from anywhere else (an internal address, a metadata service).

Uploaded images are checked by their first bytes (PNG, JPEG or WebP, as
OpenAI accepts) and handed to fal inline as data URIs, which fal's image
inputs accept: nothing is stored on a third host, and no extra round trip
or upload URL needs vetting.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re

import requests

from ..relay import Relay
from . import errors

__all__ = ["image_b64", "upload_data_uri"]

logger = logging.getLogger("flask_fal_proxy.openai_compat")

MAX_IMAGE_BYTES = 32 * 1024 * 1024
_MEDIA_URL = re.compile(r"https://(?:[a-z0-9-]+\.)*fal\.media/[A-Za-z0-9\-._~%:@+,=!$*'()/?&;]*")
_DATA_URI = re.compile(r"data:[a-z0-9.+/-]*(?:;[a-z0-9=.-]+)*;base64,", re.IGNORECASE)


def sniff_image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def upload_data_uri(data: bytes, field: str) -> str:
    """An uploaded image as a data URI for fal; 400 naming ``field`` if it is not one."""
    content_type = sniff_image_type(data)
    if content_type is None:
        raise errors.invalid_request(f"{field} must be a PNG, JPEG or WebP image.", field)
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def image_b64(url: str, relay: Relay, timeout: tuple[float, float] | None = None) -> str:
    """The base64 of a result image: decoded from a data URI, or fetched from fal's media."""
    prefix = _DATA_URI.match(url)
    if prefix is not None:
        payload = url[prefix.end() :]
        try:
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise errors.image_unavailable("fal returned a malformed data URI") from None
        return payload
    if _MEDIA_URL.fullmatch(url) is None:
        raise errors.image_unavailable("it is not on fal's media hosts")
    try:
        with relay.open("GET", url, {"Accept": "image/*"}, None, timeout) as response:
            if response.status_code != 200:
                raise errors.image_unavailable(f"fal's media host answered {response.status_code}")
            data = response.raw.read(MAX_IMAGE_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        logger.warning("image download failed (%s)", type(exc).__name__)
        raise errors.image_unavailable("fal's media host could not be reached") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise errors.image_unavailable(f"it is larger than {MAX_IMAGE_BYTES} bytes")
    return base64.b64encode(data).decode()
