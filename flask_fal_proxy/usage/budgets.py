"""Spend caps and the calendar windows they count in.

A budget is money per calendar period in UTC (``hour``, ``day``,
``month``), not a sliding window: "$5 a day" should reset at midnight UTC,
when the owner's own bill rolls over, and a page can say when. Each
(budget, who, period) gets one counter whose name holds the period's start,
so a new period starts from zero without anything having to reset it.
Amounts are kept in whole micro-dollars so counters add exactly on every
store (Redis ``INCRBY`` has no rounding to disagree about).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..errors import ProxyError

__all__ = ["PERIODS", "SCOPES", "Budget", "budget_exceeded", "from_micros", "to_micros"]

PERIODS = ("hour", "day", "month")
SCOPES = ("user", "total")
_ADJECTIVE = {"hour": "hourly", "day": "daily", "month": "monthly"}
MICROS = 1_000_000


def to_micros(usd: float) -> int:
    return int(round(usd * MICROS))


def from_micros(micros: int) -> float:
    return micros / MICROS


@dataclass(frozen=True)
class Budget:
    """``usd`` may be spent per calendar ``per`` (UTC), by each user or by everyone together."""

    usd: float
    per: str = "day"
    scope: str = "user"

    def __post_init__(self) -> None:
        if isinstance(self.usd, bool) or not isinstance(self.usd, (int, float)) or self.usd <= 0:
            raise ValueError(f"Budget usd must be a positive number, got {self.usd!r}")
        if self.usd != self.usd or self.usd == float("inf"):
            raise ValueError("Budget usd must be finite")
        if self.per not in PERIODS:
            raise ValueError(f"Budget per must be one of {', '.join(PERIODS)}, got {self.per!r}")
        if self.scope not in SCOPES:
            raise ValueError(f"Budget scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")

    @property
    def limit_micros(self) -> int:
        return to_micros(self.usd)

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The start and end (the reset) of the period ``now`` falls in."""
        now = now.astimezone(timezone.utc)
        if self.per == "hour":
            start = now.replace(minute=0, second=0, microsecond=0)
            return start, start + timedelta(hours=1)
        if self.per == "day":
            start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return start, start + timedelta(days=1)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if start.month == 12:
            return start, start.replace(year=start.year + 1, month=1)
        return start, start.replace(month=start.month + 1)

    def counter(self, user: str | None, now: datetime) -> str | None:
        """The counter this budget charges for ``user`` now; None if it does not apply."""
        if self.scope == "user" and user is None:
            return None
        start, _ = self.window(now)
        who = "*" if self.scope == "total" else f"u={user}"
        return f"{self.per}:{start:%Y%m%dT%H}:{who}"

    def describe(self) -> str:
        whose = "for this user" if self.scope == "user" else "for this service"
        return f"the {_ADJECTIVE[self.per]} budget of ${self.usd:,.2f} {whose}"


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def budget_exceeded(budget: Budget, resets_at: datetime) -> ProxyError:
    """402 ``budget_exceeded``: the faces render it; the facade maps it to OpenAI's 429."""
    message = f"This call would pass {budget.describe()}; it resets at {iso(resets_at)}."
    return ProxyError(402, "budget_exceeded", message, {"x-should-retry": "false"})
