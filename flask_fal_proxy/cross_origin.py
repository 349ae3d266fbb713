"""CORS for the proxy routes with Flask-CORS, allowing what the browser SDKs send.

A page on another origin can call a proxy route only after a preflight that
names its headers; the SDKs send more than ``content-type``:
``@anthropic-ai/sdk`` adds ``anthropic-version``,
``anthropic-dangerous-direct-browser-access`` and a family of
``x-stainless-*`` headers, ``@fal-ai/client`` adds ``x-fal-target-url`` and
other ``x-fal-*`` headers. Getting that list right once is the repetition
this module removes. Origins are exact (no wildcard, no ``null``): a page
any site can produce is no guard, and the preflight is what stops other
sites' browsers from spending the key. Non-browser clients ignore CORS;
rate limits and ``is_authenticated`` are for them.

Needs the ``cors`` extra (``pip install flask-fal-proxy[cors]``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .admission import trust_origins
from .checks import MissingExtra, as_string_tuple, checked_origins

if TYPE_CHECKING:
    import flask
    from flask_cors import CORS

__all__ = [
    "BROWSER_SDK_HEADERS",
    "EXPOSED_HEADERS",
    "STAINLESS_HEADERS",
    "allow_browser_origins",
    "require_flask_cors",
]

# The OpenAI and Anthropic SDKs' telemetry and retry headers.
STAINLESS_HEADERS = re.compile(r"x-stainless-[a-z0-9-]+", re.IGNORECASE)

# Request headers a browser SDK may ask to send (matched case-insensitively).
BROWSER_SDK_HEADERS: tuple[str | re.Pattern[str], ...] = (
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    STAINLESS_HEADERS,
    re.compile(r"x-fal-[a-z0-9-]+", re.IGNORECASE),
)
# Response headers a page may read: the SDKs show request ids, and a page
# that was rate limited needs Retry-After to know when to try again.
EXPOSED_HEADERS = (
    "request-id",
    "x-fal-request-id",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)


def require_flask_cors(feature: str) -> type[CORS]:
    """Flask-CORS's ``CORS``, or one ``ImportError`` naming the extra that brings it."""
    try:
        from flask_cors import CORS
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise MissingExtra(feature, "cors", "Flask-CORS") from exc
    return CORS  # type: ignore[no-any-return]


def allow_browser_origins(
    app: flask.Flask,
    origins: Sequence[str],
    routes: Sequence[str],
    *,
    allow_headers: Sequence[str | re.Pattern[str]] = BROWSER_SDK_HEADERS,
    max_age: int = 600,
    supports_credentials: bool = False,
) -> CORS:
    """Let pages on ``origins`` call ``routes`` (URL prefixes such as ``/api/anthropic``).

    Each route covers itself and everything below it. ``supports_credentials``
    lets a cross-origin page send its cookies, which an ``is_authenticated``
    hook based on the session needs; leave it off otherwise.
    """
    CORS = require_flask_cors("allow_browser_origins")
    allowed = list(checked_origins("origins", origins))
    if not allowed:
        raise ValueError("origins cannot be empty")
    resources = {}
    for route in as_string_tuple("routes", routes):
        if not route.startswith("/") or route.endswith("/"):
            raise ValueError(f"route must start with '/' and not end with one, got {route!r}")
        resources[rf"{re.escape(route)}(?:/.*)?\Z"] = {}
    if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
        raise ValueError("max_age must be a non-negative int")
    trust_origins(app, allowed)
    return CORS(
        app,
        resources=resources,
        origins=allowed,
        allow_headers=list(allow_headers),
        expose_headers=list(EXPOSED_HEADERS),
        methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
        max_age=max_age,
        supports_credentials=supports_credentials,
        vary_header=True,
    )
