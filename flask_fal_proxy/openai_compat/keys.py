"""Which fal key runs the next job, and which keys to leave alone for a while.

Jobs take the keys in turn so that several accounts share the load; a key
fal refuses at submit (401/403 revoked, 429 rate-limited) is skipped for that
job and the next one tried, each at most once, because a submit that fal
refused started nothing and is safe to repeat with another key. A revoked
key would be refused again on every job, so it is benched for a while
instead of costing each job a round trip. Keys are named in logs only by a
short fingerprint.

Nothing here holds a lock across I/O: the turn counter is an
``itertools.count`` (its ``next`` is atomic under the GIL and never yields
to another greenlet), and the bench is a dict of deadlines.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Sequence

__all__ = ["KeyPool", "fingerprint"]

logger = logging.getLogger("flask_fal_proxy.openai_compat")

BENCH_SECONDS = 300.0


def fingerprint(key: str) -> str:
    """Eight hex digits that tell keys apart in a log without revealing one."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class KeyPool:
    """fal keys in round-robin order, minus the benched ones."""

    def __init__(self, keys: Sequence[str], bench_seconds: float = BENCH_SECONDS) -> None:
        unique = list(dict.fromkeys(k.strip() for k in keys if k and k.strip()))
        if not unique:
            raise ValueError("no fal keys: pass fal_keys=, or set AI_KEYS or FAL_KEY")
        self._keys = tuple(unique)
        self._turn = itertools.count()
        self._benched_until: dict[str, float] = {}
        self.bench_seconds = bench_seconds

    def __len__(self) -> int:
        return len(self._keys)

    def for_job(self) -> list[str]:
        """Every key once, starting at this job's turn; benched keys only if all are.

        When every key is benched the bench may be stale (a key re-enabled on
        fal's side), and trying them costs one refused submit each, not a job.
        """
        start = next(self._turn) % len(self._keys)
        ordered = self._keys[start:] + self._keys[:start]
        now = time.monotonic()
        usable = [k for k in ordered if self._benched_until.get(k, 0.0) <= now]
        return usable or list(ordered)

    def bench(self, key: str, status: int) -> None:
        now = time.monotonic()
        if self._benched_until.get(key, 0.0) <= now:
            logger.warning(
                "fal refused key %s with %d; not using it for %g s",
                fingerprint(key),
                status,
                self.bench_seconds,
            )
        self._benched_until[key] = now + self.bench_seconds
