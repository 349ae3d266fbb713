"""Image bytes in and out: uploads for edits, downloads for ``b64_json``.

Downloads are made only from fal's media hosts (``fal.media`` and its
subdomains), over https, without a key, without redirects and under a size
cap: a result is data fal produced, and a URL in it must not make this
server fetch from anywhere else (an internal address, a metadata service).
The images of one answer share one budget (:class:`DownloadBudget`), since
ten images each under the per-image cap can still be more than a worker
should hold, and a few are fetched side by side rather than one after
another. Any transport failure of a download (a cut or stalled body raises
urllib3's own exceptions, not requests') is a 502 ``image_unavailable``.

Uploaded images are checked by their first bytes (PNG, JPEG or WebP, as
OpenAI accepts) and handed to fal inline as data URIs, which fal's image
inputs accept: nothing is stored on a third host, and no extra round trip
or upload URL needs vetting. Each is base64-encoded once, as bytes
(:class:`.json_parts.Base64Text`), and every job of the request shares
that one copy.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ..relay import Relay
from . import errors
from .call_failures import TRANSPORT_ERRORS
from .json_parts import Base64Text

__all__ = ["DownloadBudget", "image_b64", "images_b64", "upload_data_uri"]

logger = logging.getLogger("flask_fal_proxy.openai_compat")

MAX_IMAGE_BYTES = 32 * 1024 * 1024
# All the images of one b64_json answer together; the answer is a third larger.
MAX_B64_TOTAL_BYTES = 64 * 1024 * 1024
PARALLEL_DOWNLOADS = 4
_READ_SIZE = 256 * 1024
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


def upload_data_uri(data: bytes, field: str) -> Base64Text:
    """An uploaded image as a data URI for fal; 400 naming ``field`` if it is not one."""
    content_type = sniff_image_type(data)
    if content_type is None:
        raise errors.invalid_request(f"{field} must be a PNG, JPEG or WebP image.", field)
    return Base64Text(base64.b64encode(data), f"data:{content_type};base64,")


class _Stopped(Exception):
    """Another download of the same answer failed; this one gave up."""


class DownloadBudget:
    """The image bytes one answer may still take, shared by its downloads."""

    def __init__(self, total: int | None = None) -> None:
        total = MAX_B64_TOTAL_BYTES if total is None else total
        self.total = total
        self._left = total
        self._stopped = False
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        with self._lock:
            if self._stopped:
                raise _Stopped()
            self._left -= size
            if self._left < 0:
                self._stopped = True
                raise errors.images_too_large(self.total)

    def stop(self) -> None:
        """Make every other download of the answer give up at its next read."""
        with self._lock:
            self._stopped = True


def image_b64(
    url: str,
    relay: Relay,
    timeout: tuple[float, float] | None = None,
    budget: DownloadBudget | None = None,
) -> bytes:
    """The base64 of a result image: decoded from a data URI, or fetched from fal's media."""
    budget = budget if budget is not None else DownloadBudget()
    prefix = _DATA_URI.match(url)
    if prefix is not None:
        payload = url[prefix.end() :].encode("ascii", "replace")
        try:
            budget.take(len(base64.b64decode(payload, validate=True)))
        except (binascii.Error, ValueError):
            raise errors.image_unavailable("fal returned a malformed data URI") from None
        return payload
    if _MEDIA_URL.fullmatch(url) is None:
        raise errors.image_unavailable("it is not on fal's media hosts")
    data = bytearray()
    try:
        with relay.open("GET", url, {"Accept": "image/*"}, None, timeout) as response:
            if response.status_code != 200:
                raise errors.image_unavailable(f"fal's media host answered {response.status_code}")
            while True:
                chunk = response.raw.read(_READ_SIZE, decode_content=True)
                if not chunk:
                    break
                budget.take(len(chunk))
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    raise errors.image_unavailable(f"it is larger than {MAX_IMAGE_BYTES} bytes")
    except TRANSPORT_ERRORS as exc:
        # A refused connection, a cut or stalled body, a broken encoding: all the same here.
        logger.warning("image download failed (%s)", type(exc).__name__)
        raise errors.image_unavailable("fal's media host could not be reached") from None
    return base64.b64encode(data)


def images_b64(
    urls: Sequence[str],
    relay: Relay,
    budget: DownloadBudget | None = None,
    parallel: int = PARALLEL_DOWNLOADS,
) -> list[bytes]:
    """Every image's base64, in order, at most ``parallel`` at once; the first failure wins."""
    budget = budget if budget is not None else DownloadBudget()

    def one(url: str) -> bytes:
        try:
            return image_b64(url, relay, None, budget)
        except BaseException:
            budget.stop()
            raise

    if len(urls) <= 1 or parallel <= 1:
        return [one(url) for url in urls]
    with ThreadPoolExecutor(max_workers=min(parallel, len(urls))) as pool:
        futures = [pool.submit(one, url) for url in urls]
    failures = [f.exception() for f in futures if f.exception() is not None]
    real = [e for e in failures if not isinstance(e, _Stopped)]
    if failures:
        raise (real or failures)[0]
    return [f.result() for f in futures]
