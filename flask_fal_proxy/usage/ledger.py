"""Where spend is counted: one process (``memory://``) or shared (``redis://``).

Every operation that can refuse a call is atomic across all the budgets it
touches, in one step: a call is checked and reserved against the user's day
and the service's month together, or against neither. With checks and
increments as separate steps, two concurrent calls could both see $4.90 of
$5 spent and both pass. On Redis the step is a Lua script (scripts run one
at a time on the server); in memory, a lock.

A queue job's reservation is kept by fal's request id until its result is
fetched, in the store, because the fetch may reach another worker or
instance than the submit did; ``take_pending`` hands it out once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..checks import MissingExtra

__all__ = ["Ledger", "MemoryLedger", "Pending", "RedisLedger", "open_ledger"]

# A counter outlives its period by this much, so a late settlement still finds it.
_GRACE_SECONDS = 3 * 86400
# How long an unfetched queue job's reservation is kept.
PENDING_TTL_SECONDS = 86400


@dataclass(frozen=True)
class Pending:
    """A queue job's reservation, waiting for the result fetch that settles it."""

    counters: tuple[str, ...]
    micros: int
    unit_price: float
    endpoint: str
    day: str

    def dumps(self) -> str:
        return json.dumps(
            [list(self.counters), self.micros, self.unit_price, self.endpoint, self.day]
        )

    @classmethod
    def loads(cls, text: str | bytes) -> Pending:
        counters, micros, unit_price, endpoint, day = json.loads(text)
        return cls(tuple(counters), int(micros), float(unit_price), str(endpoint), str(day))


class Ledger(Protocol):
    def reserve(
        self, counters: Sequence[tuple[str, int, int]], micros: int, day: str, endpoint: str
    ) -> int:
        """Add ``micros`` to every counter unless one would pass its limit.

        ``counters`` are ``(name, limit, ttl_seconds)``. Refused (returns the
        index of the first counter in the way) when a counter is already at
        its limit or would go past it; returns -1 when reserved. The app's
        per-endpoint spend for ``day`` grows by the same amount.
        """

    def adjust(self, counters: Sequence[str], micros: int, day: str, endpoint: str) -> None:
        """Add ``micros`` (negative to release) to counters and the day's endpoint spend."""

    def spent(self, counters: Sequence[str]) -> list[int]: ...

    def endpoints(self, day: str) -> dict[str, int]: ...

    def put_pending(self, request_id: str, pending: Pending) -> None: ...

    def take_pending(self, request_id: str) -> Pending | None: ...


class MemoryLedger:
    """Counters in this process: right for one worker, or for per-worker caps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, float]] = {}
        self._days: dict[str, dict[str, int]] = {}
        self._pending: dict[str, tuple[Pending, float]] = {}
        self._next_sweep = 0.0

    def _sweep(self, now: float) -> None:
        # Old periods' counters would otherwise stay for the life of the process.
        self._next_sweep = now + 60
        for name in [n for n, (_, exp) in self._counters.items() if exp < now]:
            del self._counters[name]
        for rid in [r for r, (_, exp) in self._pending.items() if exp < now]:
            del self._pending[rid]
        for day in sorted(self._days)[:-3]:
            del self._days[day]

    def reserve(
        self, counters: Sequence[tuple[str, int, int]], micros: int, day: str, endpoint: str
    ) -> int:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            for index, (name, limit, _) in enumerate(counters):
                current = self._counters.get(name, (0, 0.0))[0]
                if current >= limit or current + micros > limit:
                    return index
            for name, _, ttl in counters:
                current, expires = self._counters.get(name, (0, now + ttl))
                self._counters[name] = (current + micros, expires)
            self._add_day(day, endpoint, micros)
        return -1

    def _add_day(self, day: str, endpoint: str, micros: int) -> None:
        if micros:
            spend = self._days.setdefault(day, {})
            spend[endpoint] = spend.get(endpoint, 0) + micros

    def adjust(self, counters: Sequence[str], micros: int, day: str, endpoint: str) -> None:
        if not micros:
            return
        now = time.time()
        with self._lock:
            for name in counters:
                current, expires = self._counters.get(name, (0, now + _GRACE_SECONDS))
                self._counters[name] = (current + micros, expires)
            self._add_day(day, endpoint, micros)

    def spent(self, counters: Sequence[str]) -> list[int]:
        with self._lock:
            return [self._counters.get(name, (0, 0.0))[0] for name in counters]

    def endpoints(self, day: str) -> dict[str, int]:
        with self._lock:
            return dict(self._days.get(day, {}))

    def put_pending(self, request_id: str, pending: Pending) -> None:
        with self._lock:
            self._pending[request_id] = (pending, time.time() + PENDING_TTL_SECONDS)

    def take_pending(self, request_id: str) -> Pending | None:
        with self._lock:
            entry = self._pending.pop(request_id, None)
        return entry[0] if entry else None


# KEYS: the counters, then the day's endpoint hash. ARGV: micros, endpoint,
# day-hash ttl, then a (limit, ttl) pair per counter.
_RESERVE = """
local micros = tonumber(ARGV[1])
local n = #KEYS - 1
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  local limit = tonumber(ARGV[2 + 2 * i])
  if current >= limit or current + micros > limit then return i - 1 end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], micros)
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[3 + 2 * i]) end
end
if micros ~= 0 then
  redis.call('HINCRBY', KEYS[n + 1], ARGV[2], micros)
  if redis.call('TTL', KEYS[n + 1]) < 0 then redis.call('EXPIRE', KEYS[n + 1], ARGV[3]) end
end
return -1
"""

# KEYS: the counters, then the day's endpoint hash. ARGV: micros, endpoint, ttl.
_ADJUST = """
local micros = tonumber(ARGV[1])
for i = 1, #KEYS - 1 do
  redis.call('INCRBY', KEYS[i], micros)
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[3]) end
end
redis.call('HINCRBY', KEYS[#KEYS], ARGV[2], micros)
if redis.call('TTL', KEYS[#KEYS]) < 0 then redis.call('EXPIRE', KEYS[#KEYS], ARGV[3]) end
return 0
"""

_TAKE = """
local value = redis.call('HGET', KEYS[1], 'reservation')
if value then redis.call('DEL', KEYS[1]) end
return value
"""


class RedisLedger:
    """Counters in Redis, shared by every worker and instance that uses the same server.

    Keys share one hash tag, so on a Redis Cluster the scripts' keys are in
    one slot.
    """

    def __init__(self, client: Any, prefix: str = "{flask_fal_proxy}:usage:") -> None:
        self.client = client
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._adjust = client.register_script(_ADJUST)
        self._take = client.register_script(_TAKE)

    def _day_key(self, day: str) -> str:
        return f"{self.prefix}endpoints:{day}"

    def reserve(
        self, counters: Sequence[tuple[str, int, int]], micros: int, day: str, endpoint: str
    ) -> int:
        keys = [self.prefix + name for name, _, _ in counters] + [self._day_key(day)]
        args: list[Any] = [micros, endpoint, 3 * 86400]
        for _, limit, ttl in counters:
            args += [limit, ttl]
        return int(self._reserve(keys=keys, args=args))

    def adjust(self, counters: Sequence[str], micros: int, day: str, endpoint: str) -> None:
        if not micros:
            return
        keys = [self.prefix + name for name in counters] + [self._day_key(day)]
        self._adjust(keys=keys, args=[micros, endpoint, _GRACE_SECONDS])

    def spent(self, counters: Sequence[str]) -> list[int]:
        if not counters:
            return []
        values = self.client.mget([self.prefix + name for name in counters])
        return [int(v) if v is not None else 0 for v in values]

    def endpoints(self, day: str) -> dict[str, int]:
        raw = self.client.hgetall(self._day_key(day))
        return {_text(k): int(v) for k, v in raw.items()}

    def put_pending(self, request_id: str, pending: Pending) -> None:
        key = f"{self.prefix}pending:{request_id}"
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, "reservation", pending.dumps())
        pipe.expire(key, PENDING_TTL_SECONDS)
        pipe.execute()

    def take_pending(self, request_id: str) -> Pending | None:
        value = self._take(keys=[f"{self.prefix}pending:{request_id}"])
        return Pending.loads(value) if value else None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def open_ledger(storage_uri: str) -> MemoryLedger | RedisLedger:
    """The ledger a ``storage_uri`` names, as ``limit_proxy_routes`` takes one."""
    if storage_uri == "memory://":
        return MemoryLedger()
    if storage_uri.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise MissingExtra("a redis:// storage_uri", "usage", "redis") from exc
        return RedisLedger(redis.Redis.from_url(storage_uri, socket_timeout=5))
    raise ValueError(
        f"storage_uri must be 'memory://' or a redis:// URL, got {storage_uri.split(':')[0]!r}"
    )
