"""Errors the proxy answers itself.

The fal JS client shows ``body.message`` to the user, so every refusal is
JSON with a human ``message`` and a stable machine ``code`` that callers can
branch on; nothing from the request or the credentials is echoed back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    import flask

__all__ = [
    "ProxyError",
    "error_response",
    "install_json_method_not_allowed",
    "install_safety_net",
]

logger = logging.getLogger("flask_fal_proxy")


class ProxyError(Exception):
    """A request the proxy refuses (or cannot complete) with a known status.

    ``log_line`` is for the operator, not the client: a refusal that needs
    fixing on the server (no key configured) is logged as an error with it,
    every other refusal as one warning line with its code. A ``quiet``
    refusal adds no line: its cause was reported once already (the rate
    limiter logs its backend's outage when it starts, not for every call).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        log_line: str | None = None,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.log_line = log_line
        self.quiet = quiet

    def to_response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps({"message": message, "code": code}, separators=(",", ":"))
    response = Response(body, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# Constructors for each refusal, so statuses, codes and wording live in one place.
def method_not_allowed(allowed: str, upstream: str = "fal") -> ProxyError:
    message = f"Method not allowed by the {upstream} proxy."
    return ProxyError(405, "method_not_allowed", message, {"Allow": allowed})


def missing_target_url() -> ProxyError:
    return ProxyError(400, "missing_target_url", "Missing the x-fal-target-url header.")


def invalid_target_url(reason: str) -> ProxyError:
    return ProxyError(412, "invalid_target_url", f"Target URL rejected: {reason}.")


def endpoint_not_allowed() -> ProxyError:
    return ProxyError(403, "endpoint_not_allowed", "This endpoint is not allowed by the proxy.")


def origin_not_allowed() -> ProxyError:
    return ProxyError(
        403, "origin_not_allowed", "Requests from this origin are not allowed by the proxy."
    )


def unauthorized(upstream: str = "fal") -> ProxyError:
    return ProxyError(
        401, "unauthorized", f"Authentication is required to use the {upstream} proxy."
    )


def path_not_allowed() -> ProxyError:
    return ProxyError(403, "path_not_allowed", "This path is not allowed by the proxy.")


def invalid_path(reason: str) -> ProxyError:
    return ProxyError(400, "invalid_path", f"Path rejected: {reason}.")


def unsupported_media_type(expected: str = "application/json") -> ProxyError:
    return ProxyError(415, "unsupported_media_type", f"The request body must be {expected}.")


def payload_too_large(limit: int) -> ProxyError:
    return ProxyError(413, "payload_too_large", f"The request body exceeds {limit} bytes.")


def invalid_json(reason: str = "") -> ProxyError:
    detail = f": {reason}" if reason else ""
    return ProxyError(400, "invalid_json", f"The request body is not well-formed JSON{detail}.")


def invalid_header() -> ProxyError:
    return ProxyError(
        400, "invalid_header", "A header the proxy forwards has a value that cannot be sent."
    )


def number_out_of_range(reason: str) -> ProxyError:
    return ProxyError(
        400, "number_out_of_range", f"The request body has a number out of range: {reason}."
    )


def incomplete_body() -> ProxyError:
    return ProxyError(
        400, "incomplete_body", "The request body is shorter than its Content-Length."
    )


def missing_credentials(upstream: str = "fal", remedy: str = "") -> ProxyError:
    return ProxyError(
        500,
        "missing_credentials",
        f"The {upstream} proxy has no {upstream} credentials configured.",
        log_line=f"no {upstream} credentials: {remedy or 'configure a key'}",
    )


def invalid_credentials(upstream: str = "fal", setting: str = "the key") -> ProxyError:
    return ProxyError(
        500,
        "invalid_credentials",
        f"The {upstream} proxy's {upstream} credentials are misconfigured.",
        log_line=f"the {upstream} credentials are not a valid header value (a stray newline "
        f"or control character in {setting}?); not sending them",
    )


def upstream_unreachable(upstream: str = "fal") -> ProxyError:
    return ProxyError(502, "upstream_unreachable", f"{upstream} could not be reached.")


def upstream_timeout(upstream: str = "fal") -> ProxyError:
    return ProxyError(504, "upstream_timeout", f"{upstream} did not answer in time.")


def internal_error() -> ProxyError:
    return ProxyError(500, "internal_error", "The proxy failed to handle this request.")


def rate_limited(headers: Mapping[str, str] | None = None) -> ProxyError:
    return ProxyError(
        429,
        "rate_limited",
        "Too many requests to the proxy; try again after Retry-After.",
        headers,
    )


def rate_limit_unavailable() -> ProxyError:
    return ProxyError(
        503,
        "rate_limit_unavailable",
        "The proxy cannot check its rate limits right now; try again shortly.",
        quiet=True,
    )


def http_error(status: int, name: str) -> ProxyError:
    """A refusal Flask or Werkzeug raised inside one of our views, in our shape."""
    code = "_".join(name.lower().replace("-", " ").split()) or "http_error"
    return ProxyError(status, code, f"{name}.")


def _origin(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame: where, without what."""
    tb = exc.__traceback__
    if tb is None:
        return "unknown"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"


def install_safety_net(
    blueprint: flask.Blueprint,
    respond: Callable[[ProxyError], Response] = ProxyError.to_response,
) -> None:
    """Answer whatever escapes a view of ``blueprint`` in the face's own error shape.

    A bug or a library error inside a view would otherwise be Flask's HTML
    500 with the traceback in the log, and a traceback's locals and messages
    can hold headers, bodies or keys. Here it becomes a JSON 500 and one log
    line with the exception's type and where it was raised. Werkzeug's own
    refusals raised inside a view keep their status in the same shape;
    routing errors (404, 405) happen before a blueprint is chosen and stay
    Flask's, as before.
    """
    from flask import request

    def unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.code is not None:
            # A rate limiter's 429 (Flask-Limiter raises it from a before-request
            # hook) gets its own code; its Retry-After is added after this.
            refusal = rate_limited() if exc.code == 429 else http_error(exc.code, exc.name)
            for name, value in exc.get_headers():
                if name.lower() in ("allow", "retry-after", "www-authenticate"):
                    refusal.headers[name] = value
            exc = refusal
        if isinstance(exc, ProxyError):
            if exc.log_line:
                logger.error("%s", exc.log_line)
            elif not exc.quiet:
                logger.warning("rejected %s request: %s (%d)", request.method, exc.code, exc.status)
            return respond(exc)
        logger.error(
            "%s: unexpected %s at %s; answered 500",
            blueprint.name,
            type(exc).__name__,
            _origin(exc),
        )
        return respond(internal_error())

    blueprint.register_error_handler(Exception, unexpected)


def install_json_method_not_allowed(
    blueprint: flask.Blueprint, view: str, allow: str, upstream: str = "fal"
) -> None:
    """Answer a wrong method on ``blueprint``'s ``view`` with the JSON 405.

    Routing fails before any blueprint hook runs, so the 405 is turned into
    JSON from an app-wide hook that only acts on requests whose URL is the
    view's; every other route of the app keeps Flask's own answer.
    """
    from flask import current_app, request
    from werkzeug.exceptions import MethodNotAllowed

    view_endpoint = f"{blueprint.name}.{view}"

    @blueprint.before_app_request
    def _json_method_not_allowed() -> Response | None:
        exc = request.routing_exception
        if not isinstance(exc, MethodNotAllowed):
            return None
        adapter = current_app.url_map.bind_to_environ(request.environ)
        matched = None
        for method in exc.valid_methods or ("GET",):
            try:
                rule, _ = adapter.match(method=method, return_rule=True)
            except Exception:
                continue
            matched = rule.endpoint
            break
        if matched != view_endpoint:
            return None
        logger.warning("rejected %s request: method_not_allowed (405)", request.method)
        return method_not_allowed(allow, upstream).to_response()
