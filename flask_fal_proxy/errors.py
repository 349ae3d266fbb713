"""Errors the proxy answers itself.

The fal JS client shows ``body.message`` to the user, so every refusal is
JSON with a human ``message`` and a stable machine ``code`` that callers can
branch on; nothing from the request or the credentials is echoed back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from werkzeug.wrappers import Response

__all__ = ["ProxyError", "error_response"]


class ProxyError(Exception):
    """A request the proxy refuses (or cannot complete) with a known status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

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
def method_not_allowed(allowed: str) -> ProxyError:
    return ProxyError(
        405, "method_not_allowed", "Method not allowed by the fal proxy.", {"Allow": allowed}
    )


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


def unauthorized() -> ProxyError:
    return ProxyError(401, "unauthorized", "Authentication is required to use the fal proxy.")


def unsupported_media_type() -> ProxyError:
    return ProxyError(415, "unsupported_media_type", "The request body must be application/json.")


def payload_too_large(limit: int) -> ProxyError:
    return ProxyError(413, "payload_too_large", f"The request body exceeds {limit} bytes.")


def invalid_json() -> ProxyError:
    return ProxyError(400, "invalid_json", "The request body is not well-formed JSON.")


def missing_credentials() -> ProxyError:
    return ProxyError(
        500, "missing_credentials", "The fal proxy has no fal credentials configured."
    )


def invalid_credentials() -> ProxyError:
    return ProxyError(
        500, "invalid_credentials", "The fal proxy's fal credentials are misconfigured."
    )


def upstream_unreachable() -> ProxyError:
    return ProxyError(502, "upstream_unreachable", "fal could not be reached.")


def upstream_timeout() -> ProxyError:
    return ProxyError(504, "upstream_timeout", "fal did not answer in time.")
