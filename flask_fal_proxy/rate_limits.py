"""Rate limits per client and per proxy route with Flask-Limiter, refused in JSON.

A key proxy turns every request into spend, so each route gets its own
budget per client (``"30/minute"`` for text, ``"10/minute"`` for images...).
What this module adds to Flask-Limiter is what the proxies need from it:
limits keyed by blueprint name, the CORS preflight (``OPTIONS``) and health
probes never counted (a browser sends a preflight before most calls, a load
balancer probes every few seconds, and neither costs anything upstream), and
the 429 in the routes' JSON error shape. Counters live in ``memory://`` per
process by default; give several instances one ``storage_uri="redis://..."``
to share them.

The limiter only ever speaks for itself. ``Retry-After`` and
``X-RateLimit-*`` go on its own 429, never on an answer that came from the
provider: a provider's ``Retry-After: 7`` is what the client must wait, and
the SDKs read it. Nothing the limiter does after the view runs can replace
an answer either, because that answer has been paid for. And a storage
backend that is down or stalled costs each call at most a short timeout,
then either refuses it with a JSON 503 or lets it through unlimited, as the
deployer chose, with one log line when the outage starts and one when it
ends, instead of a traceback per call.

Needs the ``limits`` extra (``pip install flask-fal-proxy[limits]``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from . import errors
from .checks import MissingExtra
from .errors import ProxyError

if TYPE_CHECKING:
    import flask
    from flask_limiter import Limiter, RequestLimit
    from limits.errors import StorageError

__all__ = [
    "DEFAULT_BACKEND_TIMEOUT",
    "describe_backend",
    "is_health_probe",
    "is_preflight",
    "limit_proxy_routes",
]

logger = logging.getLogger("flask_fal_proxy")

# Seconds to connect to and to hear from a Redis backend: a stalled one then
# costs a call at most about a second (connect plus read) instead of hanging it.
DEFAULT_BACKEND_TIMEOUT = 0.5
_TIMEOUT_OPTIONS = ("socket_connect_timeout", "socket_timeout")
_BACKEND_ERROR_MODES = ("refuse", "allow")


def is_preflight() -> bool:
    """Whether the current request is a CORS preflight, which no limit counts."""
    from flask import request

    return request.method == "OPTIONS"


def is_health_probe() -> bool:
    """Whether the current request is for a health view (endpoint ``health`` or ``*.health``).

    A limited or refused probe makes a load balancer pull an instance that
    is serving fine, so no limit counts probes and they never touch the
    limiter's backend.
    """
    from flask import request

    endpoint = request.endpoint or ""
    return endpoint == "health" or endpoint.endswith(".health")


def describe_backend(storage_uri: str) -> str:
    """``storage_uri`` as a log line may name it: scheme, hosts and path, never credentials.

    User, password and query string (where ``?password=`` can hide) are
    dropped.
    """
    scheme, sep, rest = storage_uri.partition("://")
    if not sep:
        return scheme.split("?", 1)[0].split("@")[-1]
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    location, slash, path = rest.partition("/")
    location = location.rsplit("@", 1)[-1]
    return f"{scheme}://{location}{slash}{path}"


class _Backend:
    """Whether the limiter's storage answers; each change is logged once, not per call."""

    def __init__(self, storage_uri: str, on_backend_error: str) -> None:
        self.name = describe_backend(storage_uri)
        self.refuses = on_backend_error == "refuse"
        self._down_since: float | None = None
        self._lock = threading.Lock()

    def failed(self, exc: StorageError) -> None:
        if self._down_since is not None:
            return
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        consequence = (
            "limited calls are refused with 503 rate_limit_unavailable"
            if self.refuses
            else "limited calls go through unlimited"
        )
        logger.error(
            "rate limit backend %s is unavailable (%s); %s until it answers",
            self.name,
            type(exc.storage_error).__name__,
            consequence,
        )

    def answered(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            since = self._down_since
            if since is None:
                return
            self._down_since = None
        logger.warning(
            "rate limit backend %s answers again after %.1f s; limits apply",
            self.name,
            time.monotonic() - since,
        )


@functools.lru_cache(maxsize=1)
def _limiter_class() -> type[Limiter]:
    from flask_limiter import Limiter, RateLimitExceeded
    from limits.errors import StorageError

    class ProxyLimiter(Limiter):
        """Flask-Limiter whose refusals are the package's and whose backend failures are answered.

        Flask-Limiter checks every limited request in ``_check_request_limit``
        (a before-request hook, or the wrapper of a decorated view); this is
        the one place where its outcomes are turned into answers.
        """

        _proxy_backend: _Backend
        _proxy_limit_headers: bool

        def _check_request_limit(
            self, callable_name: str | None = None, in_middleware: bool = True
        ) -> None:
            try:
                super()._check_request_limit(callable_name, in_middleware)
            except RateLimitExceeded:
                self._proxy_backend.answered()
                raise self._refusal() from None
            except StorageError as exc:
                self._proxy_backend.failed(exc)
                if self._proxy_backend.refuses:
                    raise errors.rate_limit_unavailable() from None
                return
            if self.current_limits:
                self._proxy_backend.answered()

        def _refusal(self) -> ProxyError:
            breached = self.current_limit
            if breached is None:
                return errors.rate_limited({})
            return errors.rate_limited(_refusal_headers(breached, self._proxy_limit_headers))

    return ProxyLimiter


def _refusal_headers(breached: RequestLimit, limit_headers: bool) -> dict[str, str]:
    """When the client may try again, and with ``limit_headers`` the limit it met.

    Reading the window can fail like any backend call; the refusal then
    says the whole window, which is never too short.
    """
    from limits.errors import StorageError

    try:
        reset_at, remaining = breached.reset_at, breached.remaining
    except StorageError:
        reset_at, remaining = int(time.time() + breached.limit.get_expiry()), 0
    headers = {"Retry-After": str(max(1, int(reset_at - time.time())))}
    if limit_headers:
        headers["X-RateLimit-Limit"] = str(breached.limit.amount)
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(reset_at)
    return headers


def _keep_answers(app: flask.Flask, limiter: Limiter, backend: _Backend) -> None:
    """Make Flask-Limiter's after-request step unable to replace an answer.

    That step touches the backend only for ``deduct_when`` limits; when it
    fails, the view's answer (a finished, paid generation) still goes out.
    """
    from limits.errors import StorageError

    funcs = app.after_request_funcs.get(None, [])
    for index, func in enumerate(funcs):
        if isinstance(func, functools.partial) and func.args and func.args[0] is limiter:

            def guarded(response: flask.Response, step: Callable[..., Any] = func) -> Any:
                try:
                    return step(response)
                except StorageError as exc:
                    backend.failed(exc)
                    return response

            funcs[index] = guarded


def _storage_options(
    storage_uri: str, given: Mapping[str, Any] | None, backend_timeout: float | None
) -> dict[str, Any]:
    options = dict(given or {})
    # Storage errors arrive as limits' StorageError, whatever the backend.
    options["wrap_exceptions"] = True
    if backend_timeout is not None and storage_uri.startswith(("redis", "valkey")):
        for name in _TIMEOUT_OPTIONS:
            options.setdefault(name, backend_timeout)
    return options


def limit_proxy_routes(
    app: flask.Flask,
    limits: Mapping[str, str | Sequence[str]],
    *,
    storage_uri: str = "memory://",
    key_func: Callable[[], str] | None = None,
    on_backend_error: Literal["refuse", "allow"] = "refuse",
    backend_timeout: float | None = DEFAULT_BACKEND_TIMEOUT,
    headers_enabled: bool = True,
    **limiter_options: Any,
) -> Limiter:
    """Apply ``limits`` (blueprint name -> Flask-Limiter limit strings) to registered blueprints.

    ``key_func`` identifies a client, by default its address; behind a load
    balancer wrap the app in Werkzeug's ``ProxyFix`` first, or every client
    shares the balancer's address and budget.

    When the storage backend fails, ``on_backend_error="refuse"`` answers a
    limited call 503 ``rate_limit_unavailable`` (nothing is spent that no
    limit counted); ``"allow"`` lets it through unlimited (the service stays
    up, the budget is open until the backend answers). ``backend_timeout``
    is the connect and read timeout, in seconds, given to a Redis or Valkey
    backend unless ``storage_options`` sets its own; ``None`` leaves the
    client's defaults (no timeout). ``headers_enabled`` puts
    ``X-RateLimit-Limit``/``-Remaining``/``-Reset`` on the limiter's 429
    besides ``Retry-After``.

    ``limiter_options`` go to ``flask_limiter.Limiter``, except
    ``swallow_errors``, which ``on_backend_error`` replaces. The returned
    limiter can limit the app's other routes too; their refusals are the
    same JSON.
    """
    try:
        from flask_limiter.util import get_remote_address
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise MissingExtra("limit_proxy_routes", "limits", "Flask-Limiter") from exc
    _check_settings(app, limits, on_backend_error, backend_timeout, limiter_options)
    options = _limiter_options(storage_uri, backend_timeout, limiter_options)
    strings_by_name = _limit_strings(limits)
    backend = _Backend(storage_uri, on_backend_error)
    limiter = _limiter_class()(key_func or get_remote_address, storage_uri=storage_uri, **options)
    limiter._proxy_backend = backend  # type: ignore[attr-defined]
    limiter._proxy_limit_headers = headers_enabled  # type: ignore[attr-defined]
    _limit_app(app, limiter, backend, strings_by_name)
    return limiter


def _limit_app(
    app: flask.Flask, limiter: Limiter, backend: _Backend, strings_by_name: Mapping[str, list[str]]
) -> None:
    """Attach ``limiter`` to ``app``; probes and preflights are never counted.

    Refusals on routes outside the proxy blueprints (which answer in their
    own shape) are JSON too, through the app-wide handler.
    """
    limiter.request_filter(is_health_probe)
    limiter.init_app(app)
    _keep_answers(app, limiter, backend)
    app.register_error_handler(ProxyError, ProxyError.get_response)
    for name, strings in strings_by_name.items():
        limiter.limit(";".join(strings), exempt_when=is_preflight)(app.blueprints[name])


def _check_settings(
    app: flask.Flask,
    limits: Mapping[str, str | Sequence[str]],
    on_backend_error: str,
    backend_timeout: float | None,
    limiter_options: Mapping[str, Any],
) -> None:
    """Refuse, at start-up, every setting that would otherwise fail on a call or be ignored."""
    if not limits:
        raise ValueError("limits cannot be empty")
    unknown = sorted(set(limits) - set(app.blueprints))
    if unknown:
        raise ValueError(
            f"no registered blueprint named {', '.join(map(repr, unknown))}; register the "
            "proxy blueprints before limiting them"
        )
    if on_backend_error not in _BACKEND_ERROR_MODES:
        raise ValueError(
            f"on_backend_error must be one of {', '.join(map(repr, _BACKEND_ERROR_MODES))}"
        )
    if backend_timeout is not None and not backend_timeout > 0:
        raise ValueError("backend_timeout must be a positive number of seconds, or None")
    if limiter_options.get("swallow_errors"):
        raise ValueError(
            "swallow_errors logs a traceback for every call while the backend is down; "
            "use on_backend_error='allow' to let calls through instead"
        )


def _limiter_options(
    storage_uri: str, backend_timeout: float | None, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The user's Flask-Limiter options with the three this module must own.

    Backend errors are answered by ``ProxyLimiter`` rather than swallowed, and
    the limiter's headers go on its own 429 only (see the module docstring).
    """
    options = dict(given)
    options["swallow_errors"] = False
    options["headers_enabled"] = False
    options["storage_options"] = _storage_options(
        storage_uri, options.get("storage_options"), backend_timeout
    )
    return options


def _limit_strings(limits: Mapping[str, str | Sequence[str]]) -> dict[str, list[str]]:
    """Each blueprint's limit strings as a list, parsed now.

    A typo in a limit string would otherwise surface as a 500 on the first
    request.
    """
    from limits import parse_many

    strings_by_name = {}
    for name, value in limits.items():
        strings = [value] if isinstance(value, str) else list(value)
        if not strings or not all(isinstance(s, str) and s for s in strings):
            raise ValueError(f"limits[{name!r}] must be a limit string or a list of them")
        for limit in strings:
            parse_many(limit)
        strings_by_name[name] = strings
    return strings_by_name
