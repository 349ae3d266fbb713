"""The fal face: one route that ``@fal-ai/client`` calls with ``proxyUrl``.

The order is the one of ``@fal-ai/server-proxy`` (target URL, endpoint,
authentication, credentials) followed by the body checks, so that the cheap
refusals come before any byte of the body is read; :class:`Face` in
``admission`` runs them, and this module supplies fal's rules.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import flask
import requests

from . import errors
from .admission import FOREIGN_FETCH_SITES, Face, Outbound, mount_face, trust_origins
from .config import ProxyConfig
from .credentials import credential_header_value
from .fal_protocol import CLIENT_PROXY_HEADER, DEFAULT_PROXY_ROUTE, TARGET_URL_HEADER
from .relay import Relay, connection_tokens, pick_headers
from .validation import Target, parse_target_url, read_json_body

__all__ = ["create_blueprint", "fal_request_headers"]

logger = logging.getLogger("flask_fal_proxy")

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")
_VIEW = "proxy"
_NOT_FORWARDED = frozenset({TARGET_URL_HEADER})


def fal_request_headers(
    incoming: Iterable[tuple[str, str]],
    authorization: str,
    extra: Iterable[str] = (),
    connection_tokens: set[str] | frozenset[str] = frozenset(),
) -> dict[str, str]:
    """The headers fal receives: a short allow-list, never the browser's credentials."""
    headers = pick_headers(
        incoming, tuple(extra), connection_tokens, prefix="x-fal-", skip=_NOT_FORWARDED
    )
    headers["authorization"] = authorization
    headers["x-fal-client-proxy"] = CLIENT_PROXY_HEADER
    return headers


def _endpoint_is_checked(method: str, target: Target) -> bool:
    # fal.run executes a model whatever the method, so every call there is
    # checked; elsewhere only a POST starts work (queue submit). fal.ai hosts
    # serve storage, not models, as in @fal-ai/server-proxy.
    if target.host == "fal.run":
        return True
    return method == "POST" and not (target.host == "fal.ai" or target.host.endswith(".fal.ai"))


def _origin_allowed(request: flask.Request, allowed: frozenset[str]) -> bool:
    """The ``allowed_origins`` guard: with a list, a present ``Origin`` must be on it.

    Stricter than the cross-origin rule every face has: a listed deployment
    refuses even same-host pages it did not name. Without an ``Origin`` only
    a browser that still reports a foreign initiator is refused.
    """
    origins = request.headers.getlist("Origin")
    if origins:
        return len(origins) == 1 and origins[0] in allowed
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    return fetch_site not in FOREIGN_FETCH_SITES


class _FalFace(Face):
    upstream = "fal"
    request_id_headers = ("x-fal-request-id",)
    altered_url = staticmethod(errors.invalid_target_url)

    def __init__(self, name: str, config: ProxyConfig, relay: Relay) -> None:
        self.name = name
        self.config = config
        self.relay = relay
        self.is_authenticated = config.authentication_check
        self.resolve_fal_auth = config.credential_resolver
        self.allowed_origins = frozenset(config.allowed_origins)
        self.cross_origin_protection = config.cross_origin_protection

    def check_origin(self, request: flask.Request) -> None:
        if self.allowed_origins and not _origin_allowed(request, self.allowed_origins):
            raise errors.origin_not_allowed()
        super().check_origin(request)

    def rules(self, request: flask.Request) -> Outbound:
        config = self.config
        raw_targets = request.headers.getlist(TARGET_URL_HEADER)
        if not raw_targets or not raw_targets[0]:
            raise errors.missing_target_url()
        if len(raw_targets) > 1:
            raise errors.invalid_target_url("more than one target URL")
        target = parse_target_url(raw_targets[0])
        if not config.url_matcher(target.without_scheme):
            raise errors.invalid_target_url("it does not match the allowed URL patterns")
        method = request.method
        if (
            config.allowed_endpoints
            and _endpoint_is_checked(method, target)
            and not config.endpoint_matcher(target.endpoint)
        ):
            raise errors.endpoint_not_allowed()
        return Outbound(method, target.url, target.endpoint)

    def authenticate(self, request: flask.Request) -> None:
        if not self.config.allow_unauthorized_requests and not self.is_authenticated(request):
            raise errors.unauthorized()

    def credential(self, request: flask.Request) -> str:
        return credential_header_value(
            self.resolve_fal_auth(request),
            "fal",
            "FAL_KEY",
            "set FAL_KEY in app.config or the environment, or pass resolve_fal_auth",
        )

    def read_body(self, request: flask.Request, outbound: Outbound) -> None:
        if outbound.method not in ("GET", "HEAD"):
            outbound.body = read_json_body(request, self.config.max_request_body_bytes)

    def headers(self, request: flask.Request, outbound: Outbound, credential: str) -> None:
        outbound.headers = fal_request_headers(
            request.headers.items(),
            credential,
            self.config.forward_request_headers,
            connection_tokens(request.headers),
        )


def create_blueprint(
    config: ProxyConfig | None = None,
    *,
    route: str = DEFAULT_PROXY_ROUTE,
    name: str = "fal_proxy",
    session: requests.Session | None = None,
    **overrides: Any,
) -> flask.Blueprint:
    """Build the proxy blueprint; register it with ``app.register_blueprint``.

    ``overrides`` are ``ProxyConfig`` field names applied over ``config``;
    ``session`` carries every outbound call, so adapters mounted on it (for
    retries, pool size or egress) apply to the proxy.
    """
    config = config if config is not None else ProxyConfig()
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(ProxyConfig) if f.init}
        if unknown:
            raise TypeError(f"unknown ProxyConfig fields: {', '.join(sorted(unknown))}")
        config = dataclasses.replace(config, **overrides)
    if not config.allowed_endpoints:
        logger.warning(
            "fal proxy %r: allowed_endpoints is empty, every fal endpoint can be called; "
            "restrict it in production",
            name,
        )
    if config.allow_unauthorized_requests:
        logger.warning(
            "fal proxy %r: allow_unauthorized_requests is True, anyone who can reach "
            "the route can spend your fal credits; require authentication in production",
            name,
        )
    relay = Relay(
        session, connect_timeout=config.connect_timeout, read_timeout=config.read_timeout
    )
    face = _FalFace(name, config, relay)
    blueprint = mount_face(face, route, [(route, _VIEW, ALLOWED_METHODS)], exact=True)
    if config.allowed_origins:
        blueprint.record_once(lambda state: trust_origins(state.app, config.allowed_origins))
    blueprint.fal_proxy_config = config  # type: ignore[attr-defined]
    blueprint.fal_proxy_relay = relay  # type: ignore[attr-defined]
    return blueprint
