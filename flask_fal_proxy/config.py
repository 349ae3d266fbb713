"""The fal face's configuration, and the limits every face shares.

A mistake in the configuration of a key-holding proxy should stop the
deployment, not surface as a 500 on the first browser call, so every field is
checked in ``__post_init__`` (by the shared validators in ``checks``) and bad
values raise ``ValueError``. Each face has one frozen config object built on
:class:`FaceLimits`: ``ProxyConfig`` here, ``ProviderConfig`` and
``OpenAIConfig`` beside their faces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .checks import (
    as_string_tuple,
    check_positive_int,
    check_positive_number,
    checked_callable,
    checked_forward_headers,
    checked_origins,
)
from .credentials import fal_authorization
from .fal_protocol import DEFAULT_ALLOWED_URL_PATTERNS, DEFAULT_PROXY_ROUTE, TARGET_URL_HEADER
from .policy import compile_patterns

if TYPE_CHECKING:
    import flask

__all__ = [
    "DEFAULT_ALLOWED_URL_PATTERNS",
    "DEFAULT_PROXY_ROUTE",
    "TARGET_URL_HEADER",
    "FaceLimits",
    "ProxyConfig",
]

DEFAULT_MAX_REQUEST_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 10.0
# fal.run holds a synchronous call open until the model finishes; this bounds
# the silence between two reads, not the whole call.
DEFAULT_READ_TIMEOUT = 600.0

IsAuthenticated = Callable[["flask.Request"], bool]
ResolveFalAuth = Callable[["flask.Request"], "str | None"]


def authorization_header_present(request: flask.Request) -> bool:
    """Default authentication check, the same rule as ``@fal-ai/server-proxy``."""
    return "Authorization" in request.headers


def fal_key_from_app_or_env(request: flask.Request) -> str | None:
    """Default credential resolver: ``Key <FAL_KEY>`` from ``app.config``, else the environment.

    The client's own ``Authorization`` header is deliberately never used.
    """
    return fal_authorization()


@dataclass(frozen=True, kw_only=True)
class FaceLimits:
    """What bounds every face: body size, timeouts, who may call, which pages.

    ``cross_origin_protection`` refuses calls a browser marks as coming from
    a page of another origin unless that origin is trusted (see
    ``admission.is_cross_origin``); turn it off only for a route that must be
    open to every site.
    """

    is_authenticated: IsAuthenticated | None = None
    max_request_body_bytes: int = DEFAULT_MAX_REQUEST_BODY_BYTES
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    cross_origin_protection: bool = True

    def __post_init__(self) -> None:
        checked_callable("is_authenticated", self.is_authenticated)
        check_positive_int("max_request_body_bytes", self.max_request_body_bytes)
        check_positive_number("connect_timeout", self.connect_timeout)
        check_positive_number("read_timeout", self.read_timeout)
        if not isinstance(self.cross_origin_protection, bool):
            raise ValueError("cross_origin_protection must be a bool")


@dataclass(frozen=True, kw_only=True)
class ProxyConfig(FaceLimits):
    """Everything that decides what the fal route lets through.

    Field names follow ``@fal-ai/server-proxy``'s ``ProxyConfig`` in snake
    case so a migration is a rename; the extra fields bound what a browser
    can make the server do (body size, timeouts, forwarded headers).
    """

    allowed_url_patterns: Sequence[str] = DEFAULT_ALLOWED_URL_PATTERNS
    allowed_endpoints: Sequence[str] = ()
    allow_unauthorized_requests: bool = True
    resolve_fal_auth: ResolveFalAuth | None = None
    forward_request_headers: Sequence[str] = ()
    allowed_origins: Sequence[str] = ()
    _compiled: dict[str, object] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
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
        checked_callable("resolve_fal_auth", self.resolve_fal_auth)
        set_(self, "allowed_origins", checked_origins("allowed_origins", self.allowed_origins))
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
