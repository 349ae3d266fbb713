"""Usage you can see and budgets that hold, on every face of an app.

    from flask_fal_proxy.usage import Budget, track_usage

    track_usage(app, identify=lambda request: flask.session.get("user_id"),
                budgets=[Budget(5, per="day"), Budget(200, per="month", scope="total")])

``track_usage`` registers observers on the admission seam
(:mod:`flask_fal_proxy.admission`), so no face knows about it: first the
budget observer (estimate, reserve, settle, one usage record per call), then
the Prometheus metrics, which read the cost the first one noted. See
docs/USAGE.md for the model and the set-up with Redis and gunicorn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..admission import add_observer
from .budgets import Budget
from .fal_prices import FalPriceBook, Price
from .ledger import open_ledger
from .prices import DEFAULT_TOKEN_PRICES, Prices
from .tracker import UsageTracker

if TYPE_CHECKING:
    import flask
    import requests

__all__ = ["DEFAULT_TOKEN_PRICES", "Budget", "Price", "Prices", "UsageTracker", "track_usage"]

logger = logging.getLogger("flask_fal_proxy.usage")

_USAGE_VIEW = "flask_fal_proxy_usage"
_METRICS_VIEW = "flask_fal_proxy_metrics"


def _fal_session(app: flask.Flask) -> requests.Session | None:
    """The session the app's fal route sends with, so its adapters apply to pricing too."""
    for blueprint in app.blueprints.values():
        relay = getattr(blueprint, "fal_proxy_relay", None)
        if relay is not None:
            return relay.session  # type: ignore[no-any-return]
    return None


def _pricing_key(
    app: flask.Flask, fal_key: Callable[[], str | None] | None
) -> Callable[[], str | None]:
    """The fal key as the fal route finds it (config, then environment), else the facade's."""

    def key() -> str | None:
        if fal_key is not None:
            value = (fal_key() or "").strip()
            return (value if value.startswith("Key ") else f"Key {value}") if value else None
        from ..credentials import fal_authorization, server_setting

        with app.app_context():
            found = fal_authorization()
            pool = [k.strip() for k in server_setting("AI_KEYS").split(",") if k.strip()]
        if found:
            return found
        for blueprint in app.blueprints.values():
            pool.extend(getattr(blueprint, "fal_proxy_keys", ()))
        return f"Key {pool[0]}" if pool else None

    return key


def _metrics() -> tuple[Any, Callable[[], Any] | None]:
    """The metrics observer and exposition view, when the metrics module and its client exist."""
    try:
        from .metrics import MetricsObserver, metrics_response
    except ModuleNotFoundError as exc:
        if exc.name not in ("prometheus_client", f"{__name__}.metrics"):
            raise
        return None, None
    # One set of metrics per process, shared by every app in it (see metrics.py).
    return MetricsObserver(), lambda: metrics_response()


def track_usage(
    app: flask.Flask,
    *,
    identify: Callable[[flask.Request], object] | None = None,
    budgets: Iterable[Budget] = (),
    prices: Prices | Mapping[str, Any] | None = None,
    storage_uri: str = "memory://",
    session: requests.Session | None = None,
    metrics_route: str | None = "/metrics",
    usage_route: str | None = "/api/usage",
    fal_key: Callable[[], str | None] | None = None,
) -> UsageTracker:
    """Meter every proxy face on ``app`` and hold its spend to ``budgets``.

    Call it after the proxy blueprints are registered. ``identify(request)``
    names who pays (None: only ``total`` budgets apply to that call).
    ``storage_uri`` is ``memory://`` (per process) or ``redis://...`` to share
    spend between workers and instances. ``session`` carries the calls to
    fal's pricing API (default: the fal route's session); ``fal_key``
    returns the key for them if it is not the app's ``FAL_KEY``. Raises
    ``ValueError`` for a setting that could not work.
    """
    budgets = tuple(budgets)
    _check_settings(identify, budgets, metrics_route, usage_route)
    price_table = Prices.of(prices)
    ledger = open_ledger(storage_uri)
    book = FalPriceBook(
        session if session is not None else _fal_session(app),
        _pricing_key(app, fal_key),
        price_table.fal,
    )
    tracker = UsageTracker(
        identify=identify, budgets=budgets, prices=price_table, ledger=ledger, price_book=book
    )
    add_observer(app, tracker)
    _add_metrics(app, metrics_route)
    if usage_route is not None:
        app.add_url_rule(usage_route, _USAGE_VIEW, _usage_view(tracker), methods=["GET"])
    app.extensions["flask_fal_proxy.usage"] = tracker
    return tracker


def _check_settings(
    identify: object,
    budgets: tuple[Budget, ...],
    metrics_route: str | None,
    usage_route: str | None,
) -> None:
    """Refuse at start-up what could not work; warn of budgets that would never apply."""
    for budget in budgets:
        if not isinstance(budget, Budget):
            raise ValueError(f"budgets must be Budget objects, got {budget!r}")
    if identify is not None and not callable(identify):
        raise ValueError("identify must be callable or None")
    if not identify and any(b.scope == "user" for b in budgets):
        logger.warning("track_usage: user budgets without identify= never apply")
    for name, route in (("metrics_route", metrics_route), ("usage_route", usage_route)):
        if route is not None and (not isinstance(route, str) or not route.startswith("/")):
            raise ValueError(f"{name} must be a path starting with '/' or None")


def _add_metrics(app: flask.Flask, metrics_route: str | None) -> None:
    """Count the app's calls and serve them at ``metrics_route``, if prometheus_client is there.

    The observer goes after the tracker, whose cost notes it reads. Without
    the client, metering and budgets still work and one log line says the
    route is not served.
    """
    metrics_observer, metrics_view = _metrics()
    if metrics_observer is not None:
        add_observer(app, metrics_observer)
    if metrics_route is not None:
        if metrics_view is not None:
            app.add_url_rule(metrics_route, _METRICS_VIEW, metrics_view, methods=["GET"])
        else:
            logger.warning(
                "track_usage: %s not served: metrics need prometheus_client",
                metrics_route,
            )


def _usage_view(tracker: UsageTracker) -> Callable[[], flask.Response]:
    def usage() -> flask.Response:
        import flask

        response = flask.jsonify(tracker.report(tracker.user_of(flask.request)))
        response.headers["Cache-Control"] = "no-store"
        return response

    return usage
