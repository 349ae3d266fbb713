"""Where a face finds the server's key: one rule for every face.

An explicit key given at creation wins; otherwise the setting is read from
``current_app.config`` and then the environment, on every call, so tests and
app factories can set it without touching the process environment and a
rotated key needs no restart. The client's own credential headers are never
consulted. A key that could not be sent as a header is refused here, before
requests would quote it in an exception message.
"""

from __future__ import annotations

import os

from . import errors
from .validation import is_header_value

__all__ = ["credential_header_value", "fal_authorization", "server_setting"]

def server_setting(name: str) -> str:
    """``name`` from the current app's config, else the environment; stripped, or ``""``."""
    from flask import current_app, has_app_context

    value = current_app.config.get(name) if has_app_context() else None
    # Keys pasted from files often carry a trailing newline.
    return str(value or os.environ.get(name) or "").strip()


def fal_authorization() -> str | None:
    """``Key <FAL_KEY>`` (or the older ``FAL_KEY_ID``/``FAL_KEY_SECRET`` pair), or ``None``."""
    key = server_setting("FAL_KEY")
    if not key:
        key_id, secret = server_setting("FAL_KEY_ID"), server_setting("FAL_KEY_SECRET")
        if key_id and secret:
            key = f"{key_id}:{secret}"
    return f"Key {key}" if key else None


def credential_header_value(
    value: str | None, upstream: str, setting: str, remedy: str = ""
) -> str:
    """``value`` if it can be sent as a header; the face's 500 refusal otherwise.

    ``remedy`` is what the operator's log line says to do (by default: set
    ``setting``); the client only learns that the proxy is misconfigured.
    """
    if not value:
        raise errors.missing_credentials(
            upstream, remedy or f"set {setting} in app.config or the environment"
        )
    if not is_header_value(value):
        raise errors.invalid_credentials(upstream, setting)
    return value
