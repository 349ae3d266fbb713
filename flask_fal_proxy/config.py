"""Proxy configuration, validated once when the application starts.

A mistake in the configuration of a key-holding proxy should stop the
deployment, not surface as a 500 on the first browser call, so every field is
checked in ``__post_init__`` and bad values raise ``ValueError``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .policy import DEFAULT_ALLOWED_URL_PATTERNS, TARGET_URL_HEADER, compile_patterns
from .relay import HOP_BY_HOP

if TYPE_CHECKING:
    import flask

__all__ = [
    "DEFAULT_ALLOWED_URL_PATTERNS",
    "DEFAULT_PROXY_ROUTE",
    "TARGET_URL_HEADER",
    "ProxyConfig",
]

DEFAULT_PROXY_ROUTE = "/api/fal/proxy"
DEFAULT_MAX_REQUEST_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 10.0
# fal.run holds a synchronous call open until the model finishes; this bounds
# the silence between two reads, not the whole call.
DEFAULT_READ_TIMEOUT = 600.0

# Headers that must never be forwarded, whatever the configuration says.
FORBIDDEN_FORWARD_HEADERS = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "host",
    "content-length",
    TARGET_URL_HEADER,
}

IsAuthenticated = Callable[["flask.Request"], bool]
ResolveFalAuth = Callable[["flask.Request"], "str | None"]


def authorization_header_present(request: flask.Request) -> bool:
    """Default authentication check, the same rule as ``@fal-ai/server-proxy``."""
    return "Authorization" in request.headers


def fal_key_from_app_or_env(request: flask.Request) -> str | None:
    """Default credential resolver: ``Key <FAL_KEY>``.

    ``FAL_KEY`` is read from ``current_app.config`` first so that tests and
    app factories can set it without touching the process environment; the
    ``FAL_KEY_ID``/``FAL_KEY_SECRET`` pair is the older form fal still accepts.
    The client's own ``Authorization`` header is deliberately never used.
    """
    from flask import current_app

    def setting(name: str) -> str:
        # Keys pasted from files often carry a trailing newline.
        return (current_app.config.get(name) or os.environ.get(name) or "").strip()

    key = setting("FAL_KEY")
    if not key:
        key_id, secret = setting("FAL_KEY_ID"), setting("FAL_KEY_SECRET")
        if key_id and secret:
            key = f"{key_id}:{secret}"
    return f"Key {key}" if key else None


def as_string_tuple(name: str, value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of strings, not a single string")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{name} must contain non-empty strings, got {item!r}")
    return items


def checked_forward_headers(
    name: str, values: Sequence[str], also_forbidden: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Lower-cased header names a route may forward; never credentials or hop-by-hop ones."""
    headers = tuple(h.lower() for h in as_string_tuple(name, values))
    for header in headers:
        if header in FORBIDDEN_FORWARD_HEADERS or header in also_forbidden or not is_token(header):
            raise ValueError(f"{name} cannot include {header!r}")
    return headers


def check_positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int")


@dataclass(frozen=True)
class ProxyConfig:
    """Everything that decides what the proxy lets through.

    Field names follow ``@fal-ai/server-proxy``'s ``ProxyConfig`` in snake
    case so a migration is a rename; the extra fields bound what a browser
    can make the server do (body size, timeouts, forwarded headers).
    """

    allowed_url_patterns: Sequence[str] = DEFAULT_ALLOWED_URL_PATTERNS
    allowed_endpoints: Sequence[str] = ()
    allow_unauthorized_requests: bool = True
    is_authenticated: IsAuthenticated | None = None
    resolve_fal_auth: ResolveFalAuth | None = None
    max_request_body_bytes: int = DEFAULT_MAX_REQUEST_BODY_BYTES
    forward_request_headers: Sequence[str] = ()
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    allowed_origins: Sequence[str] = ()
    _compiled: dict[str, object] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(
            self,
            "allowed_url_patterns",
            as_string_tuple("allowed_url_patterns", self.allowed_url_patterns),
        )
        set_(
            self, "allowed_endpoints", as_string_tuple("allowed_endpoints", self.allowed_endpoints)
        )
        set_(
            self,
            "forward_request_headers",
            checked_forward_headers("forward_request_headers", self.forward_request_headers),
        )
        if not isinstance(self.allow_unauthorized_requests, bool):
            raise ValueError("allow_unauthorized_requests must be a bool")
        for name in ("is_authenticated", "resolve_fal_auth"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ValueError(f"{name} must be callable or None")
        check_positive_int("max_request_body_bytes", self.max_request_body_bytes)
        check_positive_number("connect_timeout", self.connect_timeout)
        check_positive_number("read_timeout", self.read_timeout)
        set_(
            self,
            "allowed_origins",
            tuple(
                normalize_origin(o)
                for o in as_string_tuple("allowed_origins", self.allowed_origins)
            ),
        )
        # Compiling here both validates the globs and keeps it off the request path.
        self._compiled["urls"] = compile_patterns(self.allowed_url_patterns)
        self._compiled["endpoints"] = compile_patterns(self.allowed_endpoints)

    @property
    def url_matcher(self) -> Callable[[str], bool]:
        return self._compiled["urls"]  # type: ignore[return-value]

    @property
    def endpoint_matcher(self) -> Callable[[str], bool]:
        return self._compiled["endpoints"]  # type: ignore[return-value]

    @property
    def authentication_check(self) -> IsAuthenticated:
        return self.is_authenticated or authorization_header_present

    @property
    def credential_resolver(self) -> ResolveFalAuth:
        return self.resolve_fal_auth or fal_key_from_app_or_env


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str:
    """An allowed origin in the form a browser writes it in ``Origin``.

    Browsers send ``scheme://host[:port]`` in lowercase and leave out the
    default port, so entries are brought to that form here and the request
    check stays a set lookup. ``null`` (sandboxed frames, ``file:`` pages) and
    wildcards are refused: any site can produce them.
    """
    if value == "null" or "*" in value:
        raise ValueError(f"allowed_origins cannot include {value!r}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"allowed_origins entry {value!r} is not an origin") from None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or value.endswith(("?", "#"))
        or not value.isascii()
        or any(ord(c) < 0x21 for c in value)
    ):
        raise ValueError(
            f"allowed_origins entry {value!r} must be scheme://host[:port] with no path"
        )
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def is_token(name: str) -> bool:
    return bool(name) and all(c in _TOKEN_CHARS for c in name)
