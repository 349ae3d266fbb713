"""Errors the proxy answers itself.

The fal JS client shows ``body.message`` to the user, so every refusal is
JSON with a human ``message`` and a stable machine ``code`` that callers can
branch on; nothing from the request or the credentials is echoed back.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    import flask

__all__ = [
    "ProxyError",
    "install_routing_errors",
    "install_safety_net",
    "log_refusal",
    "printable",
]

logger = logging.getLogger("flask_fal_proxy")


class ProxyError(Exception):
    """A request the proxy refuses (or cannot complete) with a known status.

    The one error type of every face. As with Werkzeug's ``HTTPException``,
    :meth:`get_response` is written once and asks only :meth:`get_body` and
    :meth:`get_headers`; a face with another error shape (the OpenAI facade)
    subclasses and overrides ``get_body``. ``log_line`` is for the operator,
    not the client: a refusal that needs fixing on the server (no key
    configured) is logged as an error with it, every other refusal as one
    warning line with its code.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        log_line: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.log_line = log_line

    def get_body(self) -> dict[str, Any]:
        return {"message": self.message, "code": self.code}

    def get_headers(self) -> dict[str, str]:
        return self.headers

    def get_response(self) -> Response:
        body = json.dumps(self.get_body(), separators=(",", ":"))
        response = Response(body, status=self.status, mimetype="application/json")
        response.headers["Cache-Control"] = "no-store"
        for name, value in self.get_headers().items():
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


def rate_limited() -> ProxyError:
    return ProxyError(
        429, "rate_limited", "Too many requests to the proxy; try again after Retry-After."
    )


def http_error(status: int, name: str) -> ProxyError:
    """A refusal Flask or Werkzeug raised inside one of our views, in our shape."""
    code = "_".join(name.lower().replace("-", " ").split()) or "http_error"
    return ProxyError(status, code, f"{name}.")


def cross_origin_refused() -> ProxyError:
    return ProxyError(
        403,
        "cross_origin_refused",
        "Cross-origin requests from this page are not allowed by the proxy.",
    )


def not_found(upstream: str = "fal") -> ProxyError:
    return ProxyError(404, "not_found", f"No such route on the {upstream} proxy.")


def url_would_be_altered(what: str) -> ProxyError:
    """The relay's neutral refusal; each face words it in its own terms."""
    return ProxyError(400, "url_would_be_altered", f"The request {what}.")


def _origin(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame: where, without what."""
    tb = exc.__traceback__
    if tb is None:
        return "unknown"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")


def printable(text: str, limit: int = 200) -> str:
    """Client-supplied text as it may appear in a log line: no control characters.

    A path like ``/x%1b[31m`` would otherwise colour an operator's terminal,
    and a newline would forge a second log line.
    """
    if len(text) > limit:
        text = text[:limit] + "..."
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def log_refusal(error: ProxyError, face: str) -> None:
    """The one refusal log line of every face: method, path, code, status."""
    from flask import has_request_context, request

    if error.log_line:
        logger.error("%s: %s", face, error.log_line)
        return
    level = logging.WARNING
    where = f"{request.method} {printable(request.path)}" if has_request_context() else "-"
    logger.log(level, "%s: rejected %s: %s (%d)", face, where, error.code, error.status)


def as_refusal(exc: BaseException, face: str) -> ProxyError:
    """Whatever escaped a view, as the ProxyError it answers with."""
    if isinstance(exc, ProxyError):
        return exc
    if isinstance(exc, HTTPException) and exc.code is not None:
        # A rate limiter's 429 (Flask-Limiter raises it from a before-request
        # hook) gets its own code; its Retry-After is added after this.
        refusal = rate_limited() if exc.code == 429 else http_error(exc.code, exc.name)
        for name, value in exc.get_headers():
            if name.lower() in ("allow", "retry-after", "www-authenticate"):
                refusal.headers[name] = value
        return refusal
    if _is_client_disconnect(exc):
        return incomplete_body()
    logger.error("%s: unexpected %s at %s; answered 500", face, type(exc).__name__, _origin(exc))
    return internal_error()


def _is_client_disconnect(exc: BaseException) -> bool:
    # A client that resets its connection mid-body surfaces from the WSGI
    # input stream as one of these; it is the client's error, not ours.
    from werkzeug.exceptions import ClientDisconnected

    return isinstance(exc, (ConnectionResetError, BrokenPipeError, ClientDisconnected)) or (
        type(exc).__name__ in ("ClientDisconnected", "NoMoreData")
    )


Render = Callable[[ProxyError], Response]


def install_safety_net(
    blueprint: flask.Blueprint,
    render: Render = ProxyError.get_response,
    on_refusal: Callable[[ProxyError], None] | None = None,
) -> None:
    """Answer whatever escapes a view of ``blueprint`` in the face's own error shape.

    A bug or a library error inside a view would otherwise be Flask's HTML
    500 with the traceback in the log, and a traceback's locals and messages
    can hold headers, bodies or keys. Here it becomes a JSON 500 and one log
    line with the exception's type and where it was raised. Every refusal is
    logged once, by :func:`log_refusal`, and handed to ``on_refusal`` (the
    admission path records it for the observers).
    """

    def unexpected(exc: Exception) -> Response:
        refusal = as_refusal(exc, blueprint.name)
        log_refusal(refusal, blueprint.name)
        if on_refusal is not None:
            on_refusal(refusal)
        return render(refusal)

    blueprint.register_error_handler(Exception, unexpected)


_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def install_routing_errors(
    blueprint: flask.Blueprint,
    prefix: str,
    render: Render = ProxyError.get_response,
    upstream: str = "fal",
    on_refusal: Callable[[ProxyError], None] | None = None,
    *,
    exact: bool = False,
) -> None:
    """404, 405 and slash redirects at or under ``prefix``, in the face's JSON shape.

    Routing fails before any blueprint hook runs, so this is an app-wide hook
    that only acts on paths at or below ``prefix``; every other route of the
    app keeps Flask's own answer. A doubled slash would be redirected by
    Werkzeug (a 308 to another path of the same provider); here it is a 400.
    """
    from flask import request
    from werkzeug.exceptions import MethodNotAllowed, NotFound
    from werkzeug.routing import RequestRedirect

    below = prefix.rstrip("/") + "/"

    @blueprint.before_app_request
    def _routing_error() -> Response | None:
        exc = request.routing_exception
        if exc is None:
            return None
        path = request.path
        if path != prefix and (exact or not path.startswith(below)):
            return None
        if isinstance(exc, RequestRedirect):
            refusal = invalid_path("empty path segments are not allowed")
        elif isinstance(exc, MethodNotAllowed):
            valid = set(exc.valid_methods or ())
            allow = ", ".join(m for m in _METHOD_ORDER if m in valid)
            refusal = method_not_allowed(allow, upstream)
        elif isinstance(exc, NotFound):
            refusal = not_found(upstream)
        else:
            return None
        log_refusal(refusal, blueprint.name)
        if on_refusal is not None:
            on_refusal(refusal)
        return render(refusal)
