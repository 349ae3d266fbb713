"""A provider's face: its config, its rules, then the shared admission path.

The order is the fal route's, cheapest refusal first: the method (Flask's
routing), the path as sent, the path against the allow-list, the client's
authentication, the server's key, and only then the body, so no byte of a
refused request is read. ``admission.Face`` runs the steps; this module
supplies the provider's rules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import flask
import requests

from .. import errors
from ..admission import Face, Outbound, mount_face
from ..checks import checked_route
from ..config import FaceLimits
from ..credentials import credential_header_value, server_setting
from ..relay import Relay, connection_tokens
from .outbound import provider_request_headers, read_body, requested_path, requested_query
from .spec import ProviderSpec, checked_methods, checked_paths, provider_spec

__all__ = ["ProviderConfig", "create_provider_blueprint"]

logger = logging.getLogger("flask_fal_proxy")

_VIEW = "proxy"


@dataclass(frozen=True, kw_only=True)
class ProviderConfig(FaceLimits):
    """One provider route: which provider, where, with which key and which paths.

    ``allowed_paths`` and ``allowed_methods`` replace the spec's (an empty
    path list allows nothing). The key is ``api_key``, else
    ``current_app.config[spec.key_env]``, else the environment, read per call.
    """

    provider: ProviderSpec | str
    route: str | None = None
    api_key: str | None = None
    allowed_paths: Sequence[str] | None = None
    allowed_methods: Sequence[str] | None = None
    allow_unauthorized_requests: bool = True
    _compiled: dict[str, object] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        spec = provider_spec(self.provider)
        set_(self, "provider", spec)
        set_(self, "route", checked_route(self.route or f"/api/{spec.name}"))
        paths = spec.allowed_paths if self.allowed_paths is None else self.allowed_paths
        paths, matcher = checked_paths(paths)
        set_(self, "allowed_paths", paths)
        self._compiled["paths"] = matcher
        methods = spec.allowed_methods if self.allowed_methods is None else self.allowed_methods
        set_(self, "allowed_methods", checked_methods(methods))
        if not self.allowed_methods:
            raise ValueError("allowed_methods cannot be empty")
        if not isinstance(self.allow_unauthorized_requests, bool):
            raise ValueError("allow_unauthorized_requests must be a bool")
        if not self.allow_unauthorized_requests and self.is_authenticated is None:
            raise ValueError(
                "allow_unauthorized_requests=False needs an is_authenticated hook: browser SDKs "
                "send no Authorization header to a provider route, so there is no default check"
            )
        key = self.api_key
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise ValueError("api_key must be a non-empty string or None")
        set_(self, "api_key", key.strip() if key is not None else None)

    @property
    def spec(self) -> ProviderSpec:
        return self.provider  # type: ignore[return-value]

    @property
    def path_matcher(self) -> Callable[[str], bool]:
        return self._compiled["paths"]  # type: ignore[return-value]


class _ProviderFace(Face):
    altered_url = staticmethod(errors.invalid_path)

    def __init__(self, name: str, config: ProviderConfig, relay: Relay) -> None:
        self.name = name
        self.config = config
        self.spec = config.spec
        self.upstream = config.spec.name
        self.relay = relay
        self.route: str = config.route  # type: ignore[assignment]
        self.cross_origin_protection = config.cross_origin_protection

    def rules(self, request: flask.Request) -> Outbound:
        path = requested_path(request, self.route)
        if not self.config.path_matcher(path):
            raise errors.path_not_allowed()
        query = requested_query(request)
        url = f"{self.spec.base_url}/{path}" + (f"?{query}" if query else "")
        return Outbound(request.method, url, path)

    def authenticate(self, request: flask.Request) -> None:
        config = self.config
        if config.allow_unauthorized_requests or config.is_authenticated is None:
            return
        if not config.is_authenticated(request):
            raise errors.unauthorized(self.spec.name)

    def credential(self, request: flask.Request) -> str:
        """The key header's value; the client's own key headers are never consulted."""
        spec = self.spec
        key = self.config.api_key or server_setting(spec.key_env)
        return credential_header_value(
            f"{spec.key_prefix}{key}" if key else None,
            spec.name,
            spec.key_env,
            f"set {spec.key_env} in app.config or the environment, or pass api_key",
        )

    def read_body(self, request: flask.Request, outbound: Outbound) -> None:
        outbound.body = read_body(request, self.config.max_request_body_bytes)

    def headers(self, request: flask.Request, outbound: Outbound, credential: str) -> None:
        outbound.headers = provider_request_headers(
            request.headers.items(),
            self.spec.auth_header,
            credential,
            self.spec.forward_request_headers,
            connection_tokens(request.headers),
        )


def provider_blueprint(
    config: ProviderConfig,
    *,
    name: str | None = None,
    session: requests.Session | None = None,
) -> flask.Blueprint:
    """The blueprint of a :class:`ProviderConfig`; register it with ``app.register_blueprint``."""
    spec = config.spec
    name = name if name is not None else f"{spec.name}_proxy"
    if config.allow_unauthorized_requests:
        logger.warning(
            "%s proxy %r: allow_unauthorized_requests is True, anyone who can reach the "
            "route can spend your %s credits; require authentication in production",
            spec.name,
            name,
            spec.name,
        )
    relay = Relay(
        session,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        upstream=spec.name,
        credential_header=spec.auth_header,
    )
    face = _ProviderFace(name, config, relay)
    rule = f"{face.route}/<path:subpath>"
    blueprint = mount_face(face, face.route, [(rule, _VIEW, config.allowed_methods)])
    blueprint.provider_spec = spec  # type: ignore[attr-defined]
    blueprint.provider_relay = relay  # type: ignore[attr-defined]
    return blueprint


def create_provider_blueprint(
    provider: ProviderSpec | str,
    *,
    route: str | None = None,
    name: str | None = None,
    api_key: str | None = None,
    allowed_paths: Sequence[str] | None = None,
    allowed_methods: Sequence[str] | None = None,
    allow_unauthorized_requests: bool = True,
    is_authenticated: Callable[[flask.Request], bool] | None = None,
    max_request_body_bytes: int = FaceLimits.max_request_body_bytes,
    connect_timeout: float = FaceLimits.connect_timeout,
    read_timeout: float = FaceLimits.read_timeout,
    cross_origin_protection: bool = True,
    session: requests.Session | None = None,
) -> flask.Blueprint:
    """A blueprint serving ``{route}/<path>`` from ``{base_url}/<path>`` with the server's key.

    ``provider`` is a ``ProviderSpec`` or ``"anthropic"``, ``"elevenlabs"``,
    ``"openai"``; the other arguments are :class:`ProviderConfig`'s fields,
    validated there (``ValueError``).
    """
    config = ProviderConfig(
        provider=provider,
        route=route,
        api_key=api_key,
        allowed_paths=allowed_paths,
        allowed_methods=allowed_methods,
        allow_unauthorized_requests=allow_unauthorized_requests,
        is_authenticated=is_authenticated,
        max_request_body_bytes=max_request_body_bytes,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        cross_origin_protection=cross_origin_protection,
    )
    return provider_blueprint(config, name=name, session=session)
