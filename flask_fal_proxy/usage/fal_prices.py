"""fal's own prices, asked of fal once a day per endpoint.

fal bills every call in its endpoint's unit (an image, a megapixel, a second
of video) at a per-endpoint price that changes over time, and publishes both
at ``GET https://api.fal.ai/v1/models/pricing``. Asking fal is the only way
to get a size-dependent model right; a flat table per image under-counts a
large image. The answer is cached for a day. The first use of an endpoint
fetches it once however many calls arrive together (the others wait for that
one answer); a failed refresh keeps the stale price, and an endpoint fal
does not price costs $0, logged once so an operator can add an override.

The key goes to ``https://api.fal.ai`` only, through the package's relay,
which refuses to send it anywhere the URL would be rewritten to.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import requests

from ..relay import Relay

__all__ = ["PRICING_URL", "FalPriceBook", "Price"]

logger = logging.getLogger("flask_fal_proxy.usage")

PRICING_URL = "https://api.fal.ai/v1/models/pricing"
CACHE_SECONDS = 86400.0
# After a failed fetch, how long before the next try (the stale price, or $0, meanwhile).
RETRY_SECONDS = 300.0
# How long a call waits for another thread's first fetch of the same endpoint.
WAIT_SECONDS = 10.0
_MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Price:
    """USD per fal billable unit, and the unit (``image``, ``megapixel``, ``second``…)."""

    unit_price: float
    unit: str = "unit"


class _Entry:
    __slots__ = ("price", "expires", "fetching", "done")

    def __init__(self) -> None:
        self.price: Price | None = None
        self.expires = 0.0
        self.fetching = False
        self.done = threading.Event()


def as_price(endpoint: str, value: object) -> Price:
    """An override: a number (USD per unit), ``(price, unit)`` or a ``Price``."""
    if isinstance(value, Price):
        return value
    unit = "unit"
    if isinstance(value, tuple) and len(value) == 2:
        value, unit = value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"prices[{endpoint!r}] must be a non-negative number of USD per unit")
    if not isinstance(unit, str) or not unit:
        raise ValueError(f"prices[{endpoint!r}] unit must be a non-empty string")
    return Price(float(value), unit)


class FalPriceBook:
    """Prices per fal endpoint id: overrides first, then fal's pricing API."""

    def __init__(
        self,
        session: requests.Session | None,
        key: Callable[[], str | None],
        overrides: Mapping[str, object] = (),  # type: ignore[assignment]
        *,
        cache_seconds: float = CACHE_SECONDS,
        timeout: float = 10.0,
    ) -> None:
        self.relay = Relay(session, connect_timeout=timeout, read_timeout=timeout)
        self.key = key
        self.overrides = {e: as_price(e, v) for e, v in dict(overrides).items()}
        self.cache_seconds = cache_seconds
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._unpriced: set[str] = set()

    def price(self, endpoint: str) -> Price | None:
        """The endpoint's price, fetched on first use; None if nobody prices it."""
        override = self.overrides.get(endpoint)
        if override is not None:
            return override
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(endpoint)
            if entry is None:
                entry = self._entries[endpoint] = _Entry()
            fresh = entry.expires > now
            fetch = not fresh and not entry.fetching
            if fetch:
                entry.fetching = True
                entry.done.clear()
        if fetch:
            self._refresh(endpoint, entry)
        elif not fresh and entry.price is None:
            # Another thread is fetching the first price: wait for its answer.
            entry.done.wait(WAIT_SECONDS)
        price = entry.price
        if price is None:
            self._log_unpriced(endpoint)
        return price

    def _refresh(self, endpoint: str, entry: _Entry) -> None:
        price, ok = None, False
        try:
            price, ok = self._fetch(endpoint), True
        except _NoAnswer:
            pass
        finally:
            with self._lock:
                if ok:
                    entry.price = price
                    entry.expires = time.monotonic() + self.cache_seconds
                else:
                    entry.expires = time.monotonic() + RETRY_SECONDS
                entry.fetching = False
                entry.done.set()

    def _fetch(self, endpoint: str) -> Price | None:
        key = self.key()
        if not key:
            logger.warning("fal pricing: no fal key to ask fal's prices with")
            raise _NoAnswer
        url = f"{PRICING_URL}?endpoint_id={quote(endpoint, safe='/')}"
        headers = {"authorization": key, "accept": "application/json"}
        try:
            answer = self.relay.open("GET", url, headers)
            try:
                body = answer.raw.read(_MAX_ANSWER_BYTES + 1, decode_content=True)
            finally:
                answer.close()
        except (requests.RequestException, OSError) as exc:
            logger.warning("fal pricing unreachable for %s (%s)", endpoint, type(exc).__name__)
            raise _NoAnswer from None
        if answer.status_code != 200 or len(body) > _MAX_ANSWER_BYTES:
            logger.warning("fal pricing answered %s for %s", answer.status_code, endpoint)
            raise _NoAnswer
        try:
            prices = json.loads(body).get("prices") or []
            for item in prices:
                if item.get("endpoint_id") == endpoint:
                    if str(item.get("currency", "USD")).upper() != "USD":
                        logger.warning("fal pricing for %s is not in USD", endpoint)
                        return None
                    return Price(float(item["unit_price"]), str(item.get("unit") or "unit"))
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.warning("fal pricing answer for %s is not the expected shape", endpoint)
            raise _NoAnswer from None
        return None

    def _log_unpriced(self, endpoint: str) -> None:
        with self._lock:
            if endpoint in self._unpriced or len(self._unpriced) > 10000:
                return
            self._unpriced.add(endpoint)
        logger.warning("fal endpoint %s has no known price: counted as $0", endpoint)


class _NoAnswer(Exception):
    """The pricing API gave no usable answer; the stale price (or none) stands."""
