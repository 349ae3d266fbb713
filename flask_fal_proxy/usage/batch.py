"""Metric writes gathered per process and written once a second, not once per call.

A call changes six metric values (in flight up and down, the call count, the
duration's sum and bucket, the spend), and each write through
``prometheus_client`` costs several microseconds: in multiprocess mode it is
an ``mmap`` write under a lock. That was most of what metering cost a call,
for values a scrape reads every 15 seconds or so. So calls add to plain
dictionaries here, and the sums are written to the metric values by a
background thread every :data:`FLUSH_SECONDS`, by any scrape of this
process, and at exit. A scrape of another worker sees this one's values at
most a second late; a worker killed outright loses at most its last second.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["FLUSH_SECONDS", "WriteBatch", "flush_all"]

logger = logging.getLogger("flask_fal_proxy.usage")

FLUSH_SECONDS = 1.0


class WriteBatch:
    """What this process's calls added to one registry's metrics since the last write.

    Keys are ``prometheus_client`` children (``metric.labels(...)``). Counters
    get the sum of what was added, a histogram the count per bucket and the
    sum, a gauge of calls in flight this process's current value.
    """

    def __init__(self) -> None:
        self._start()
        _batches.add(self)

    def _start(self) -> None:
        self._lock = threading.Lock()
        # One flush at a time, so a gauge is never set to an older value last.
        self._writing = threading.Lock()
        self._added: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}
        self._live: dict[Any, int] = {}

    def enter(self, gauge: Any) -> None:
        with self._lock:
            self._live[gauge] = self._live.get(gauge, 0) + 1
        _start_flusher()

    def record(
        self,
        counts: Iterable[tuple[Any, float]],
        left: Any = None,
        histogram: Any = None,
        seconds: float = 0.0,
    ) -> None:
        """One finished call: what it adds to counters, the gauge it ``left``, its duration."""
        with self._lock:
            added = self._added
            for counter, amount in counts:
                added[counter] = added.get(counter, 0.0) + amount
            if left is not None:
                self._live[left] = self._live.get(left, 0) - 1
            if histogram is not None:
                self._observe(histogram, seconds)
        _start_flusher()

    def _observe(self, histogram: Any, amount: float) -> None:
        counts = self._observed.get(histogram)
        if counts is None:
            counts = self._observed[histogram] = [0.0] * (len(histogram._upper_bounds) + 1)
        counts[0] += amount
        counts[1 + bisect.bisect_left(histogram._upper_bounds, amount)] += 1

    def flush(self) -> None:
        """Write what was gathered to the metric values."""
        with self._writing:
            with self._lock:
                added, self._added = self._added, {}
                observed, self._observed = self._observed, {}
                live = dict(self._live)
            for counter, amount in added.items():
                counter.inc(amount)
            for histogram, counts in observed.items():
                # prometheus_client has no public way to add many observations at once.
                histogram._sum.inc(counts[0])
                for bucket, count in zip(histogram._buckets, counts[1:], strict=False):
                    if count:
                        bucket.inc(count)
            for gauge, value in live.items():
                gauge.set(value)

    # A registry collects this first, so a scrape of this process sees every call.
    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        self.flush()
        return []


_batches: weakref.WeakSet[WriteBatch] = weakref.WeakSet()
_flusher: threading.Thread | None = None
_starting = threading.Lock()


def flush_all() -> None:
    """Write every batch of this process now (before a scrape, and at exit)."""
    for batch in list(_batches):
        try:
            batch.flush()
        except Exception:
            logger.exception("metrics: could not write this process's values")


def _flush_forever() -> None:
    wait = threading.Event()
    while True:
        # Event.wait, not time.sleep: gevent patches both, and either way this
        # thread only wakes once a second.
        wait.wait(FLUSH_SECONDS)
        flush_all()


def _start_flusher() -> None:
    global _flusher
    if _flusher is not None:
        return
    with _starting:
        if _flusher is None:
            _flusher = threading.Thread(
                target=_flush_forever, name="flask-fal-proxy-metrics", daemon=True
            )
            _flusher.start()


def _after_fork() -> None:
    """A forked worker has no threads and no calls: it starts afresh.

    What the parent gathered is the parent's to write; written by the child
    too, it would be counted twice.
    """
    global _flusher, _starting
    _flusher = None
    _starting = threading.Lock()
    for batch in list(_batches):
        batch._start()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(flush_all)
