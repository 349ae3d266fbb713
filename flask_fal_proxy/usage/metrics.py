"""Prometheus metrics for every call the proxy faces admit or refuse.

The metrics live once per process (per registry), not once per app: a
second app, or a second ``track_usage``, reuses them, because registering a
name twice raises in ``prometheus_client`` and two copies would split one
process's counts. Under gunicorn each worker is its own process, so a scrape
reaching one worker would see only its share; with ``PROMETHEUS_MULTIPROC_DIR``
set (``example_app/gunicorn.conf.py`` does it before anything imports
``prometheus_client``) every worker writes its values to that directory and
:func:`metrics_response` answers with their sum.

Label values come from clients (the endpoint a browser asked for, the model
an SDK named), and every new value is a new time series held by Prometheus
for weeks. So ids are cut out (a fal queue request's status URL counts
under its app id) and each process lets at most :data:`MAX_LABEL_VALUES`
endpoints and models in, first come first served, counting the rest as
``other``. Only a call that passed every check of its face may claim a new
value; refused calls count under values already seen, so a flood of junk
paths cannot use up the room before real endpoints arrive.

Money: ``flask_fal_proxy_spend_usd_total`` is settled spend only. A queue
submit's price is known only when its result is fetched, perhaps on another
instance, and a counter cannot take back an estimate that turns out high;
so estimates go to a pair of counters instead, ``..._spend_reserved_usd_total``
(added when a call ends with its cost still estimated) and
``..._spend_released_usd_total`` (added when a later call settles or
releases that reservation), and what is reserved but not yet settled is
their difference.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import flask
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from .batch import WriteBatch, flush_all

if TYPE_CHECKING:
    from ..admission import Call

__all__ = ["MAX_LABEL_VALUES", "MetricsObserver", "endpoint_label", "metrics_response"]

logger = logging.getLogger("flask_fal_proxy.usage")

MAX_LABEL_VALUES = 100
OTHER = "other"

# Notes this observer reads (written by the pricing observer, which runs first)
# and the one it writes for itself.
COST_NOTE = "cost_usd"
ESTIMATED_NOTE = "estimated"
TOKENS_NOTE = "tokens"
# Optional: the estimate a settling or releasing call took off the books, and
# the endpoint its reservation was made for (a queue result's own endpoint is
# only the app id).
RELEASED_NOTE = "released_usd"
COST_ENDPOINT_NOTE = "cost_endpoint"
_IN_FLIGHT_NOTE = "metrics.in_flight"

# What generate_latest writes for names like these, and what every scraper reads
# (newer prometheus_client versions label it 1.0.0, which older scrapers do not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# From a fast refusal to a long synchronous generation or status stream.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_MAX_LABEL_LENGTH = 120
# A call refused before its face knew its target.
_NO_ENDPOINT = "none"
_QUEUE_REQUEST = re.compile(r"^(?P<app>.+?)/requests/[^/]+(?:/.*)?$")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def endpoint_label(upstream: str, endpoint: str) -> str:
    """What a call's endpoint counts under, before the per-process bound.

    fal's queue addresses a job as ``<app>/requests/<id>[/status|/cancel]``:
    all of them count under the app id. Any other UUID in a path becomes
    ``{id}``.
    """
    label = endpoint.strip("/")
    if upstream == "fal":
        match = _QUEUE_REQUEST.match(label)
        if match:
            label = match.group("app")
    label = _UUID.sub("{id}", label)
    return label[:_MAX_LABEL_LENGTH] or _NO_ENDPOINT


# endpoint_label's answers, which every call of an endpoint would work out again.
_endpoint_shape = functools.lru_cache(maxsize=1024)(endpoint_label)


class _BoundedValues:
    """The first ``limit`` distinct values of one label in this process; the rest are ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def endpoint(self, upstream: str, endpoint: str, may_claim: bool) -> str:
        """The label a call's endpoint counts under: its shape, then the bound."""
        shape = _endpoint_shape(upstream, endpoint)
        return shape if shape == _NO_ENDPOINT else self.label(shape, may_claim)

    def label(self, value: str, may_claim: bool) -> str:
        if value in self._seen:
            return value
        if not may_claim:
            return OTHER
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
            return value


_SERIES_CACHE = 4096


class _Series:
    """The children every call with the same labels writes, looked up once (see ``_child``)."""

    __slots__ = ("calls", "duration", "in_flight")

    def __init__(self, metrics: _Metrics, face: str, upstream: str, endpoint: str, status: str):
        self.calls = metrics.calls.labels(face, upstream, endpoint, status)
        self.duration = metrics.duration.labels(face, upstream)
        self.in_flight = metrics.in_flight.labels(face)


@dataclass(frozen=True)
class _Metrics:
    calls: Counter
    duration: Histogram
    spend: Counter
    reserved: Counter
    released: Counter
    tokens: Counter
    refusals: Counter
    in_flight: Gauge
    endpoints: _BoundedValues
    models: _BoundedValues
    batch: WriteBatch
    _series: dict[tuple[str, str, str, int | None], _Series] = field(default_factory=dict)

    def series(self, face: str, upstream: str, endpoint: str, status: int | None) -> _Series:
        key = (face, upstream, endpoint, status)
        found = self._series.get(key)
        if found is None:
            if len(self._series) >= _SERIES_CACHE:
                self._series.clear()
            label = str(status) if status is not None else "none"
            found = self._series[key] = _Series(self, face, upstream, endpoint, label)
        return found


_registered: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()
_registering = threading.Lock()


def _child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, kept on the metric: labels() takes a lock and checks
    its arguments on every call, and a call's labels are a few bounded values that repeat."""
    children = metric.__dict__.get("_flask_fal_proxy_children")
    if children is None:
        children = metric._flask_fal_proxy_children = {}
    child = children.get(values)
    if child is None:
        child = children[values] = metric.labels(*values)
    return child


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    with _registering:
        metrics = _registered.get(registry)
        if metrics is None:
            metrics = _registered[registry] = _register(registry)
        return metrics


def _register(registry: CollectorRegistry) -> _Metrics:
    _warn_if_not_multiprocess()
    r = registry
    # Registered first, so a scrape of this registry writes the calls' values before reading.
    batch = WriteBatch()
    r.register(batch)
    # Keyword order is registration order, which is the exposition's order.
    return _Metrics(
        calls=Counter(
            "flask_fal_proxy_calls",
            "Calls through the proxy faces, refusals included, by HTTP status.",
            ("face", "upstream", "endpoint", "status"),
            registry=r,
        ),
        duration=Histogram(
            "flask_fal_proxy_call_duration_seconds",
            "Time from a call's arrival to the last byte relayed, for calls sent upstream.",
            ("face", "upstream"),
            buckets=DURATION_BUCKETS,
            registry=r,
        ),
        **_spend_metrics(r),
        refusals=Counter(
            "flask_fal_proxy_refusals",
            "Calls the proxy refused itself, by error code (budget_exceeded included).",
            ("face", "code"),
            registry=r,
        ),
        in_flight=Gauge(
            "flask_fal_proxy_calls_in_flight",
            "Calls sent upstream whose last byte has not been relayed yet.",
            ("face",),
            multiprocess_mode="livesum",
            registry=r,
        ),
        endpoints=_BoundedValues(MAX_LABEL_VALUES),
        models=_BoundedValues(MAX_LABEL_VALUES),
        batch=batch,
    )


def _warn_if_not_multiprocess() -> None:
    """Say once that the worker's values are lost, since a scrape cannot show it.

    ``prometheus_client`` picks its value class at import, so setting the
    directory after that import silently leaves each worker counting alone.
    """
    if _multiprocess_dir() and values.ValueClass is values.MutexValue:
        logger.warning(
            "PROMETHEUS_MULTIPROC_DIR is set but prometheus_client was imported before it: "
            "this process's metrics are not written there and no scrape will show them"
        )


def _spend_metrics(r: CollectorRegistry) -> dict[str, Counter]:
    """Money and tokens: settled, reserved and released USD (see the module docstring)."""
    return {
        "spend": Counter(
            "flask_fal_proxy_spend_usd",
            "Settled spend in USD (fal billable units or tokens times price).",
            ("face", "endpoint"),
            registry=r,
        ),
        "reserved": Counter(
            "flask_fal_proxy_spend_reserved_usd",
            "Estimated USD of calls that ended before their price was settled (queue submits).",
            ("face", "endpoint"),
            registry=r,
        ),
        "released": Counter(
            "flask_fal_proxy_spend_released_usd",
            "Estimated USD taken off the books when a reservation was settled or released.",
            ("face", "endpoint"),
            registry=r,
        ),
        "tokens": Counter(
            "flask_fal_proxy_tokens",
            "Tokens billed by the model providers.",
            ("upstream", "model", "kind"),
            registry=r,
        ),
    }


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def _money(value: Any) -> float:
    """A non-negative USD amount from a note, 0 for anything else (counters cannot go down)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value) if 0 < value < math.inf else 0.0


class MetricsObserver:
    """Counts every call of the faces on an app (``add_observer(app, MetricsObserver())``).

    It reads the cost and token notes of the pricing observer, so it is
    registered after it. ``registry`` is ``prometheus_client``'s default
    unless given; observers sharing a registry share its metrics.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._metrics = _metrics_for(registry if registry is not None else REGISTRY)

    def admit(self, call: Call, request: flask.Request) -> None:
        m = self._metrics
        m.batch.enter(_child(m.in_flight, call.face))
        call.notes[_IN_FLIGHT_NOTE] = True

    def response(
        self, call: Call, method: str, url: str, status: int, headers: Mapping[str, str]
    ) -> None:
        pass

    def chunk(self, call: Call, data: bytes) -> None:
        pass

    def finish(self, call: Call) -> None:
        m = self._metrics
        notes = call.notes
        admitted = notes.pop(_IN_FLIGHT_NOTE, None) is not None
        endpoint = m.endpoints.endpoint(call.upstream, call.endpoint, admitted)
        series = m.series(call.face, call.upstream, endpoint, call.status)
        left = series.in_flight if admitted else None
        counts: list[tuple[Any, float]] = [(series.calls, 1.0)]
        if call.refusal is not None:
            counts.append((_child(m.refusals, call.face, call.refusal), 1.0))
            m.batch.record(counts, left)
            return
        if COST_NOTE in notes or RELEASED_NOTE in notes:
            self._count_spend(call, endpoint, counts)
        if TOKENS_NOTE in notes:
            self._count_tokens(call, counts)
        m.batch.record(counts, left, series.duration, call.duration)

    def _count_spend(self, call: Call, endpoint: str, counts: list[tuple[Any, float]]) -> None:
        m = self._metrics
        notes = call.notes
        priced = notes.get(COST_ENDPOINT_NOTE)
        if isinstance(priced, str) and priced:
            endpoint = m.endpoints.endpoint(call.upstream, priced, True)
        cost = _money(notes.get(COST_NOTE))
        if cost:
            counter = m.reserved if notes.get(ESTIMATED_NOTE) is True else m.spend
            counts.append((_child(counter, call.face, endpoint), cost))
        released = _money(notes.get(RELEASED_NOTE))
        if released:
            counts.append((_child(m.released, call.face, endpoint), released))

    def _count_tokens(self, call: Call, counts: list[tuple[Any, float]]) -> None:
        tokens = call.notes.get(TOKENS_NOTE)
        if not isinstance(tokens, Mapping):
            return
        m = self._metrics
        model = tokens.get("model")
        model = m.models.label(
            str(model)[:_MAX_LABEL_LENGTH] if model else "none", True
        )
        for kind in ("input", "output"):
            count = tokens.get(kind)
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                counts.append((_child(m.tokens, call.upstream, model, kind), count))


def metrics_response(registry: CollectorRegistry | None = None) -> flask.Response:
    """The Prometheus text exposition of this process, or of every worker in multiprocess mode."""
    if _multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    flush_all()
    body = generate_latest(registry if registry is not None else REGISTRY)
    response = flask.Response(body, status=200, content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response
