"""The OpenAI face's refusals, in the shape the OpenAI SDKs parse.

The SDKs raise a typed exception from ``{"error": {"message", "type",
"param", "code"}}`` and decide whether to retry from the status and the
``x-should-retry`` header, so the shape and the statuses are part of the
contract: one constructor per case keeps them in one place. The package's
own refusals (bad JSON, an oversized body, the safety net's 500) are turned
into this shape by :func:`from_proxy_error` and nowhere else.

A generation that fal has accepted is paid for whether or not the answer
reaches the client; a retry would pay again. Every refusal after a submit is
therefore marked with :func:`after_submit`, which tells the SDKs not to retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors as core
from ..errors import ProxyError

__all__ = ["OpenAIError", "after_submit", "from_proxy_error"]

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class OpenAIError(ProxyError):
    """A refusal with OpenAI's status, ``type``, ``param`` and ``code``.

    A ``ProxyError`` like every other refusal of the package, logged and
    counted the same way; only its body has OpenAI's shape. OpenAI leaves
    ``code`` empty for plain invalid requests, so the package-wide ``code``
    falls back to the ``type`` there.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, code or type, message, headers)
        self.type = type
        self.param = param
        self.openai_code = code

    def get_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.openai_code,
            }
        }


def after_submit(error: OpenAIError) -> OpenAIError:
    """Mark a refusal that follows a submit, so the SDKs do not pay for it twice."""
    error.headers["x-should-retry"] = "false"
    return error


def from_proxy_error(error: ProxyError) -> OpenAIError:
    """A package refusal (``invalid_json``, ``payload_too_large``...) in OpenAI's shape."""
    if isinstance(error, OpenAIError):
        return error
    kind = INVALID_REQUEST if error.status < 500 else SERVER_ERROR
    return OpenAIError(
        error.status, error.message, type=kind, code=error.code, headers=error.headers
    )


# Refusals of the client's request.
def invalid_api_key() -> OpenAIError:
    return OpenAIError(
        401,
        "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
        code="invalid_api_key",
        headers={"WWW-Authenticate": 'Bearer realm="fal-openai-proxy"'},
    )


def invalid_request(message: str, param: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param)


def unsupported_media_type(expected: str) -> OpenAIError:
    return from_proxy_error(core.unsupported_media_type(expected))


def length_required() -> OpenAIError:
    return OpenAIError(411, "A Content-Length is required.", code="length_required")


def body_too_large(limit: int) -> OpenAIError:
    return from_proxy_error(core.payload_too_large(limit))


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{model[:200]}' does not exist on this server.",
        param="model",
        code="model_not_found",
    )


def model_cannot_edit(model: str) -> OpenAIError:
    return OpenAIError(
        400,
        f"The model '{model}' is not an image-editing model (its input has no image_url).",
        param="model",
        code="model_not_supported",
    )


def internal_error() -> OpenAIError:
    return from_proxy_error(core.internal_error())


# fal's answers, translated.
def fal_rejected_input(message: str) -> OpenAIError:
    return OpenAIError(400, message, code="fal_validation_error")


def fal_rate_limited(retry_after: str) -> OpenAIError:
    return OpenAIError(
        429,
        "fal is rate-limiting every configured key; try again later.",
        type="requests",
        code="rate_limit_exceeded",
        headers={"Retry-After": retry_after},
    )


def fal_keys_refused() -> OpenAIError:
    return OpenAIError(
        502,
        "fal refused every configured key; the server's fal keys need attention.",
        type=SERVER_ERROR,
        code="fal_keys_refused",
    )


def schema_unavailable(model: str) -> OpenAIError:
    return OpenAIError(
        502,
        f"The input schema of model '{model}' could not be loaded from fal.",
        type=SERVER_ERROR,
        code="schema_unavailable",
    )


def fal_unreachable() -> OpenAIError:
    return from_proxy_error(core.upstream_unreachable("fal"))


def fal_error(status: int, message: str) -> OpenAIError:
    return OpenAIError(
        502, f"fal answered {status}: {message}", type=SERVER_ERROR, code="upstream_error"
    )


def generation_failed(message: str) -> OpenAIError:
    return OpenAIError(
        502, f"The generation failed on fal: {message}", type=SERVER_ERROR, code="generation_failed"
    )


def generation_timeout(seconds: float) -> OpenAIError:
    return OpenAIError(
        504,
        f"The generation did not finish within {seconds:g} s and was cancelled.",
        type=SERVER_ERROR,
        code="generation_timeout",
    )


def image_unavailable(reason: str) -> OpenAIError:
    return OpenAIError(
        502,
        f"A generated image could not be fetched: {reason}.",
        type=SERVER_ERROR,
        code="image_unavailable",
    )


def fal_timeout() -> OpenAIError:
    return from_proxy_error(core.upstream_timeout("fal"))


def insufficient_quota(message: str) -> OpenAIError:
    """A spend budget refused the call: OpenAI's quota error, which the SDKs do not retry."""
    return OpenAIError(
        429,
        message,
        type="insufficient_quota",
        code="insufficient_quota",
        headers={"x-should-retry": "false"},
    )


def fal_interrupted() -> OpenAIError:
    return OpenAIError(
        502,
        "fal's answer was cut off; the job was not retried, so it is paid for once at most.",
        type=SERVER_ERROR,
        code="upstream_interrupted",
    )


def generation_interrupted() -> OpenAIError:
    return OpenAIError(
        502,
        "The generation failed on this server after fal accepted it.",
        type=SERVER_ERROR,
        code="generation_interrupted",
    )


def images_too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        502,
        f"The generated images together are larger than {limit} bytes; ask for 'url' instead.",
        type=SERVER_ERROR,
        code="image_unavailable",
    )


def client_disconnected() -> OpenAIError:
    # Nobody reads this answer; the status (nginx's 499) is for the access log.
    return OpenAIError(
        499,
        "The client closed the connection; its jobs were cancelled.",
        type=INVALID_REQUEST,
        code="client_disconnected",
    )
