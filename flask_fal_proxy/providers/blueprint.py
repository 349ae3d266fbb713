"""A provider's route: checks in a fixed order, then the shared relay.

The order goes from the cheapest refusal to the most expensive, as on the
fal route: the method (Flask's routing), the path as sent, the path against
the allow-list, the client's authentication, the server's key, and only then
the body, so no byte of a refused request is read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import flask
import requests

from .. import errors
from ..config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_READ_TIMEOUT,
    IsAuthenticated,
    check_positive_int,
    check_positive_number,
)
from ..relay import Relay, connection_tokens
from ..validation import is_header_value
from .outbound import outbound_headers, read_body, requested_path, requested_query
from .spec import ProviderSpec, checked_methods, checked_paths, provider_spec

__all__ = ["create_provider_blueprint"]

logger = logging.getLogger("flask_fal_proxy")

_VIEW = "proxy"


class _ProviderView:
    def __init__(
        self,
        spec: ProviderSpec,
        route: str,
        relay: Relay,
        *,
        api_key: str | None,
        allows_path: Callable[[str], bool],
        is_authenticated: IsAuthenticated | None,
        max_request_body_bytes: int,
    ) -> None:
        self.spec = spec
        self.route = route
        self.relay = relay
        self.api_key = api_key
        self.allows_path = allows_path
        self.is_authenticated = is_authenticated
        self.max_request_body_bytes = max_request_body_bytes

    def __call__(self, subpath: str = "") -> flask.Response:
        # Refusals are raised as ProxyError; the blueprint's safety net logs and answers them.
        return self.handle(flask.request)  # type: ignore[no-any-return]

    def credential(self) -> str:
        """The key header's value; the client's own key headers are never consulted."""
        spec = self.spec
        key = self.api_key
        if key is None:
            key = flask.current_app.config.get(spec.key_env) or os.environ.get(spec.key_env)
        # Keys pasted from files often carry a trailing newline.
        key = (key or "").strip()
        if not key:
            raise errors.missing_credentials(
                spec.name, f"set {spec.key_env} in app.config or the environment, or pass api_key"
            )
        value = f"{spec.key_prefix}{key}"
        if not is_header_value(value):
            raise errors.invalid_credentials(spec.name, spec.key_env)
        return value

    def handle(self, request: flask.Request) -> Any:
        spec = self.spec
        # 1. The method was checked by routing (a JSON 405 before this view).
        # 2. The path as sent, then against the allow-list: nothing read yet.
        path = requested_path(request, self.route)
        if not self.allows_path(path):
            raise errors.path_not_allowed()
        query = requested_query(request)
        # 3. Who is asking, then whether the server can answer at all.
        if self.is_authenticated is not None and not self.is_authenticated(request):
            raise errors.unauthorized(spec.name)
        credential = self.credential()
        # 4. Only now the body, under the cap.
        body = read_body(request, self.max_request_body_bytes)
        url = f"{spec.base_url}/{path}" + (f"?{query}" if query else "")
        headers = outbound_headers(
            request.headers.items(),
            spec.auth_header,
            credential,
            spec.forward_request_headers,
            connection_tokens(request.headers),
        )
        return self.relay.forward(request.method, url, headers, body)


def create_provider_blueprint(
    provider: ProviderSpec | str,
    *,
    route: str | None = None,
    name: str | None = None,
    api_key: str | None = None,
    allowed_paths: Sequence[str] | None = None,
    allowed_methods: Sequence[str] | None = None,
    allow_unauthorized_requests: bool = True,
    is_authenticated: IsAuthenticated | None = None,
    max_request_body_bytes: int = DEFAULT_MAX_REQUEST_BODY_BYTES,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    session: requests.Session | None = None,
) -> flask.Blueprint:
    """A blueprint serving ``{route}/<path>`` from ``{base_url}/<path>`` with the server's key.

    ``provider`` is a ``ProviderSpec`` or ``"anthropic"``, ``"elevenlabs"``,
    ``"openai"``; ``allowed_paths`` and ``allowed_methods`` replace the
    spec's (an empty list allows nothing). The key is ``api_key``, else
    ``current_app.config[spec.key_env]``, else the environment, read per
    call so that rotating it in the config needs no restart. Everything
    else is validated here and raises ``ValueError``.
    """
    spec = provider_spec(provider)
    name = name if name is not None else f"{spec.name}_proxy"
    route = route if route is not None else f"/api/{spec.name}"
    if not isinstance(route, str) or not route.startswith("/") or route.endswith("/"):
        raise ValueError(f"route must start with '/' and not end with one, got {route!r}")
    if "<" in route or "?" in route or "#" in route:
        raise ValueError(f"route cannot hold variables, a query or a fragment: {route!r}")
    paths = spec.allowed_paths if allowed_paths is None else allowed_paths
    _, allows_path = checked_paths(paths)
    methods = checked_methods(spec.allowed_methods if allowed_methods is None else allowed_methods)
    if not methods:
        raise ValueError("allowed_methods cannot be empty")
    if not isinstance(allow_unauthorized_requests, bool):
        raise ValueError("allow_unauthorized_requests must be a bool")
    if is_authenticated is not None and not callable(is_authenticated):
        raise ValueError("is_authenticated must be callable or None")
    if not allow_unauthorized_requests and is_authenticated is None:
        raise ValueError(
            "allow_unauthorized_requests=False needs an is_authenticated hook: browser SDKs "
            "send no Authorization header to a provider route, so there is no default check"
        )
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()):
        raise ValueError("api_key must be a non-empty string or None")
    check_positive_int("max_request_body_bytes", max_request_body_bytes)
    check_positive_number("connect_timeout", connect_timeout)
    check_positive_number("read_timeout", read_timeout)
    if allow_unauthorized_requests:
        logger.warning(
            "%s proxy %r: allow_unauthorized_requests is True, anyone who can reach the "
            "route can spend your %s credits; require authentication in production",
            spec.name,
            name,
            spec.name,
        )
    relay = Relay(
        session,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        upstream=spec.name,
        credential_header=spec.auth_header,
    )
    view = _ProviderView(
        spec,
        route,
        relay,
        api_key=api_key.strip() if api_key is not None else None,
        allows_path=allows_path,
        is_authenticated=None if allow_unauthorized_requests else is_authenticated,
        max_request_body_bytes=max_request_body_bytes,
    )
    blueprint = flask.Blueprint(name, __name__)
    errors.install_safety_net(blueprint)
    # Extensions that key on the view function (Flask-Limiter) need a name
    # that is unique per blueprint.
    view.__name__, view.__qualname__ = _VIEW, f"{name}.{_VIEW}"  # type: ignore[attr-defined]
    blueprint.add_url_rule(f"{route}/<path:subpath>", _VIEW, view, methods=methods)
    allow = ", ".join((*methods, "OPTIONS"))
    errors.install_json_method_not_allowed(blueprint, _VIEW, allow, spec.name)
    blueprint.provider_spec = spec  # type: ignore[attr-defined]
    blueprint.provider_relay = relay  # type: ignore[attr-defined]
    return blueprint
