"""The Flask face of the proxy: one route, checks in a fixed order, then forward.

The order is the one of ``@fal-ai/server-proxy`` (target URL, endpoint,
authentication, credentials) followed by the body checks, so that the cheap
refusals come before any byte of the body is read.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import flask
import requests

from . import errors
from .config import DEFAULT_PROXY_ROUTE, TARGET_URL_HEADER, ProxyConfig
from .forwarder import Forwarder, connection_tokens, outbound_headers
from .validation import Target, is_header_value, parse_target_url, read_json_body

__all__ = ["create_blueprint"]

logger = logging.getLogger("flask_fal_proxy")

ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE")
_ALLOW_HEADER = ", ".join((*ALLOWED_METHODS, "HEAD", "OPTIONS"))
_VIEW = "proxy"


def _endpoint_is_checked(method: str, target: Target) -> bool:
    # fal.run executes a model whatever the method, so every call there is
    # checked; elsewhere only a POST starts work (queue submit). fal.ai hosts
    # serve storage, not models, as in @fal-ai/server-proxy.
    if target.host == "fal.run":
        return True
    return method == "POST" and not (target.host == "fal.ai" or target.host.endswith(".fal.ai"))


# Values of Sec-Fetch-Site with which a browser says another site started the call.
_FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})


def _origin_allowed(request: flask.Request, allowed: frozenset[str]) -> bool:
    """The ``allowed_origins`` guard against other websites spending the owner's credits.

    A browser always sends ``Origin`` on the calls ``@fal-ai/client`` makes
    from another site (the ``x-fal-target-url`` header makes them CORS
    requests), so a present ``Origin`` decides alone. Without one the call
    comes from the same origin, a navigation, or a non-browser client, none
    of which this guard is about; only a browser that still reports a foreign
    initiator through ``Sec-Fetch-Site`` is refused.
    """
    origins = request.headers.getlist("Origin")
    if origins:
        return len(origins) == 1 and origins[0] in allowed
    fetch_site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    return fetch_site not in _FOREIGN_FETCH_SITES


class _ProxyView:
    def __init__(self, config: ProxyConfig, forwarder: Forwarder) -> None:
        self.config = config
        self.forwarder = forwarder
        self.is_authenticated = config.authentication_check
        self.resolve_fal_auth = config.credential_resolver
        self.allowed_origins = frozenset(config.allowed_origins)

    def __call__(self) -> flask.Response:
        # Refusals are raised as ProxyError; the blueprint's safety net logs and answers them.
        return self.handle(flask.request)  # type: ignore[no-any-return]

    def handle(self, request: flask.Request) -> Any:
        config = self.config
        if self.allowed_origins and not _origin_allowed(request, self.allowed_origins):
            raise errors.origin_not_allowed()
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
        if not config.allow_unauthorized_requests and not self.is_authenticated(request):
            raise errors.unauthorized()
        authorization = self.resolve_fal_auth(request)
        if not authorization:
            raise errors.missing_credentials(
                "fal", "set FAL_KEY in app.config or the environment, or pass resolve_fal_auth"
            )
        if not is_header_value(authorization):
            raise errors.invalid_credentials("fal", "FAL_KEY")
        body = None
        if method not in ("GET", "HEAD"):
            body = read_json_body(request, config.max_request_body_bytes)
        headers = outbound_headers(
            request.headers.items(),
            authorization,
            config.forward_request_headers,
            connection_tokens(request.headers),
        )
        return self.forwarder.forward(method, target, headers, body)


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
    forwarder = Forwarder(
        session, connect_timeout=config.connect_timeout, read_timeout=config.read_timeout
    )
    blueprint = flask.Blueprint(name, __name__)
    errors.install_safety_net(blueprint)
    view = _ProxyView(config, forwarder)
    # Extensions that key on the view function (Flask-Limiter) need a name
    # that is unique per blueprint.
    view.__name__, view.__qualname__ = _VIEW, f"{name}.{_VIEW}"  # type: ignore[attr-defined]
    blueprint.add_url_rule(route, _VIEW, view, methods=ALLOWED_METHODS)
    errors.install_json_method_not_allowed(blueprint, _VIEW, _ALLOW_HEADER)

    blueprint.fal_proxy_config = config  # type: ignore[attr-defined]
    blueprint.fal_proxy_forwarder = forwarder  # type: ignore[attr-defined]
    return blueprint
