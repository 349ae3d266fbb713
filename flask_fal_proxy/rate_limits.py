"""Rate limits per client and per proxy route with Flask-Limiter, refused in JSON.

A key proxy turns every request into spend, so each route gets its own
budget per client (``"30/minute"`` for text, ``"10/minute"`` for images...).
What this module adds to Flask-Limiter is what the proxies need from it:
limits keyed by blueprint name, the CORS preflight (``OPTIONS``) never
counted (a browser sends one before most calls, and it costs nothing
upstream), ``Retry-After`` and ``X-RateLimit-*`` headers, and the 429 in the
routes' JSON error shape. Counters live in ``memory://`` per process by
default; give several instances one ``storage_uri="redis://..."`` to share
them.

Needs the ``limits`` extra (``pip install flask-fal-proxy[limits]``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import flask
    from flask_limiter import Limiter

__all__ = ["is_preflight", "limit_proxy_routes"]


def is_preflight() -> bool:
    """Whether the current request is a CORS preflight, which no limit counts."""
    from flask import request

    return request.method == "OPTIONS"


def limit_proxy_routes(
    app: flask.Flask,
    limits: Mapping[str, str | Sequence[str]],
    *,
    storage_uri: str = "memory://",
    key_func: Callable[[], str] | None = None,
    **limiter_options: Any,
) -> Limiter:
    """Apply ``limits`` (blueprint name -> Flask-Limiter limit strings) to registered blueprints.

    ``key_func`` identifies a client, by default its address; behind a load
    balancer wrap the app in Werkzeug's ``ProxyFix`` first, or every client
    shares the balancer's address and budget. ``limiter_options`` go to
    ``flask_limiter.Limiter``. The returned limiter can limit the app's
    other routes too.
    """
    try:
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError("limit_proxy_routes needs: pip install flask-fal-proxy[limits]") from exc
    if not limits:
        raise ValueError("limits cannot be empty")
    unknown = sorted(set(limits) - set(app.blueprints))
    if unknown:
        raise ValueError(
            f"no registered blueprint named {', '.join(map(repr, unknown))}; register the "
            "proxy blueprints before limiting them"
        )
    limiter_options.setdefault("headers_enabled", True)
    limiter = Limiter(
        key_func or get_remote_address, app=app, storage_uri=storage_uri, **limiter_options
    )
    for name, value in limits.items():
        strings = [value] if isinstance(value, str) else list(value)
        if not strings or not all(isinstance(s, str) and s for s in strings):
            raise ValueError(f"limits[{name!r}] must be a limit string or a list of them")
        # Validated now: a typo in a limit string would otherwise surface as a
        # 500 on the first request.
        from limits import parse_many

        for limit in strings:
            parse_many(limit)
        limiter.limit(";".join(strings), exempt_when=is_preflight)(app.blueprints[name])
    return limiter
