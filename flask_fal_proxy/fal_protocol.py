"""What fal's protocol fixes, for the fal route and the OpenAI facade alike.

These are facts about fal, not choices of this package: the header
``@fal-ai/client`` puts the real URL in, fal's own domains, the URLs the
official proxy lets through by default, the marker fal uses to recognise
a proxied call, and the sizes of the named ``image_size`` presets that
fal's image models accept. They live below every module that needs them, so
none of those modules has to import another for a constant.
"""

from __future__ import annotations

from ._version import __version__

__all__ = [
    "CLIENT_PROXY_HEADER",
    "DEFAULT_ALLOWED_URL_PATTERNS",
    "DEFAULT_PROXY_ROUTE",
    "FAL_DOMAINS",
    "IMAGE_SIZE_PRESETS",
    "TARGET_URL_HEADER",
    "is_fal_host",
]

FAL_DOMAINS = ("fal.ai", "fal.run")
TARGET_URL_HEADER = "x-fal-target-url"
DEFAULT_PROXY_ROUTE = "/api/fal/proxy"
DEFAULT_ALLOWED_URL_PATTERNS: tuple[str, ...] = (
    "fal.run/**",
    "queue.fal.run/**",
    "rest.fal.ai/storage/upload/initiate\\?storage_type=fal-cdn-v3",
    "rest.fal.ai/storage/upload/complete-multipart\\?storage_type=fal-cdn-v3",
)
# Sent as x-fal-client-proxy on every proxied call.
CLIENT_PROXY_HEADER = f"flask-fal-proxy/{__version__}"
# The (width, height) of each named ``image_size`` preset: what the facade
# translates a size into and what an estimate reads a preset as.
IMAGE_SIZE_PRESETS: dict[str, tuple[int, int]] = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}


def is_fal_host(host: str) -> bool:
    """Whether a host name is fal's own: ``fal.ai``, ``fal.run`` or below them."""
    return any(host == d or host.endswith("." + d) for d in FAL_DOMAINS)
