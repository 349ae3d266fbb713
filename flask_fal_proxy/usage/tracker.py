"""The budget and pricing observer: estimate, reserve, settle, record.

Every call that can cost money is priced before it is sent and the price is
reserved against every budget that applies, in one atomic step, so budgets
hold under any concurrency; the reservation is then corrected to what the
provider reports (fal's ``x-fal-billable-units``, the token ``usage``), or
released if the provider refused the call. What is reserved and not yet
settled counts as spent: a budget can be briefly too careful, never
overdrawn.

- fal, a call that starts paid work (``fal.run/<endpoint>``, a POST to
  ``queue.fal.run/<endpoint>``, a facade generation): estimate from the input
  × fal's unit price, reserved; settled by the answer of ``fal.run``, or for
  a queue job by its result fetch, which finds the reservation by request id
  in the ledger (it may reach another instance).
- Anthropic and OpenAI: refused if a budget is already spent; charged after,
  from the tokens the answer reports.
- ElevenLabs: the characters of ``text`` × their price, reserved like fal.

Nothing here raises after ``admit``: a failure to settle is logged, never
turned into a broken answer.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..errors import ProxyError
from .budgets import Budget, budget_exceeded, from_micros, iso, to_micros
from .fal_prices import FalPriceBook, Price
from .ledger import MemoryLedger, Pending, RedisLedger
from .prices import CACHE_READ_FACTOR, CACHE_WRITE_FACTOR, Prices, TokenPrices
from .record import write_record
from .token_usage import UsageReader
from .units import estimate_units, parse_json, read_input

if TYPE_CHECKING:
    import flask

    from ..admission import Call

__all__ = ["UsageTracker"]

logger = logging.getLogger("flask_fal_proxy.usage")

_STATE = "usage_state"
BILLABLE_UNITS = "x-fal-billable-units"
_GRACE = timedelta(days=2)
_SUBMIT_BODY_LIMIT = 64 * 1024
_MAX_USER = 200
_SLOT_CACHE = 10000
_MAX_ID = 200


def budget_unavailable() -> ProxyError:
    return ProxyError(
        503,
        "budget_unavailable",
        "Spend tracking is unavailable, so no paid call is started; try again shortly.",
        {"Retry-After": "5"},
    )


class _State:
    """What the tracker keeps about one call between ``admit`` and ``finish``."""

    __slots__ = (
        "kind",
        "counters",
        "day",
        "endpoint",
        "unit_price",
        "reserved",
        "settled",
        "estimated",
        "answered",
        "request_id",
        "body",
        "reader",
        "shares",
        "jobs",
        "unnamed",
        "lock",
    )

    def __init__(self, kind: str, counters: tuple[str, ...], day: str, endpoint: str) -> None:
        self.kind = kind
        self.counters = counters
        self.day = day
        self.endpoint = endpoint
        self.unit_price = 0.0
        self.reserved = 0  # micros still reserved (estimates not yet settled or released)
        self.settled = 0  # micros settled from the provider's own count
        self.estimated = False
        self.answered = False
        self.request_id: str | None = None
        self.body: bytearray | None = None
        self.reader: UsageReader | None = None
        self.shares: deque[int] | tuple[()] = ()

    def several_jobs(self) -> None:
        """What only the facade's calls need: one share per job, settled as each answers."""
        self.shares = deque()
        self.jobs: dict[str, int] = {}
        self.unnamed: deque[int] = deque()
        self.lock = threading.Lock()


def _host_and_path(url: str) -> tuple[str, str]:
    """Host and path (without edge slashes) of a vetted ``https://host/path?query`` URL.

    The faces send only canonical https URLs without userinfo or port, so
    splitting at the first slash is what ``urlsplit`` would find, at a
    fraction of its cost on every paid call.
    """
    host, _, rest = url.removeprefix("https://").partition("/")
    return host.lower(), rest.partition("?")[0].strip("/")


def _queue_result_id(path: str) -> str | None:
    """The request id of a queue result fetch (``<app>/requests/<id>``), else None."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[-2] == "requests" and parts[-1]:
        return parts[-1]
    return None


def _is_queue_submit(method: str, path: str) -> bool:
    """A POST to fal's queue that starts a job, rather than one about a job (``requests/<id>``)."""
    return method == "POST" and "requests" not in path.split("/")


def _estimate(price: Price, fal_input: Any) -> int:
    """Micros that one fal input is expected to cost at ``price``."""
    if fal_input is None:
        return _estimate_defaults(price)
    return to_micros(estimate_units(price.unit, fal_input) * price.unit_price)


@functools.lru_cache(maxsize=1024)
def _estimate_defaults(price: Price) -> int:
    """The estimate of an input that sets nothing the estimate reads, the common case."""
    return to_micros(estimate_units(price.unit, None) * price.unit_price)


def _units(headers: Mapping[str, str]) -> float | None:
    value = headers.get(BILLABLE_UNITS)
    if value is None:
        return None
    try:
        units = float(value)
    except ValueError:
        return None
    return units if units >= 0 and units == units and units != float("inf") else None


class UsageTracker:
    """Returned by ``track_usage``: the observer, and the budgets as a caller sees them."""

    def __init__(
        self,
        *,
        identify: Callable[[flask.Request], object] | None,
        budgets: Sequence[Budget],
        prices: Prices,
        ledger: MemoryLedger | RedisLedger,
        price_book: FalPriceBook,
    ) -> None:
        self.identify = identify
        self.budgets = tuple(budgets)
        self.prices = prices
        self.ledger = ledger
        self.price_book = price_book
        self.tokens = TokenPrices(prices.tokens)
        self._slots: dict[str | None, tuple[float, Any, Any, tuple[str, ...]]] = {}
        self._day = ""
        self._day_ends = 0.0

    # -- who and which counters -------------------------------------------------

    def user_of(self, request: flask.Request) -> str | None:
        if self.identify is None:
            return None
        who = self.identify(request)
        return None if who is None or who == "" else str(who)[:_MAX_USER]

    def _today(self, now: float) -> str:
        """The UTC day of ``now`` (epoch seconds), worked out once a day."""
        if now >= self._day_ends:
            moment = datetime.fromtimestamp(now, timezone.utc)
            start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
            self._day = f"{start:%Y-%m-%d}"
            self._day_ends = (start + timedelta(days=1)).timestamp()
        return self._day

    def _counters(
        self, user: str | None, now: float
    ) -> tuple[list[tuple[str, int, int]], list[tuple[Budget, datetime]], tuple[str, ...]]:
        """``(name, limit, ttl)`` per distinct counter, the budget and reset behind each, the names.

        They change only when a period ends, so they are kept per user until
        the first reset (a bounded number of users at a time).
        """
        cached = self._slots.get(user)
        if cached is not None and now < cached[0]:
            return cached[1], cached[2], cached[3]
        moment = datetime.fromtimestamp(now, timezone.utc)
        counters, behind = self._work_out_counters(user, moment)
        if len(self._slots) >= _SLOT_CACHE:
            self._slots.clear()
        resets = min((end for _, end in behind), default=moment + timedelta(hours=1))
        names = tuple(name for name, _, _ in counters)
        self._slots[user] = (resets.timestamp(), counters, behind, names)
        return counters, behind, names

    def _work_out_counters(
        self, user: str | None, now: datetime
    ) -> tuple[list[tuple[str, int, int]], list[tuple[Budget, datetime]]]:
        counters: list[tuple[str, int, int]] = []
        behind: list[tuple[Budget, datetime]] = []
        for budget in self.budgets:
            name = budget.counter(user, now)
            if name is None:
                continue
            _, end = budget.window(now)
            ttl = int((end - now + _GRACE).total_seconds())
            for index, (other, limit, _) in enumerate(counters):
                if other == name:
                    # Two budgets on one counter: the smaller cap is the one that holds.
                    if budget.limit_micros < limit:
                        counters[index] = (name, budget.limit_micros, ttl)
                        behind[index] = (budget, end)
                    break
            else:
                counters.append((name, budget.limit_micros, ttl))
                behind.append((budget, end))
        return counters, behind

    def _reserve(self, call: Call, state: _State, micros: int, now: float) -> None:
        counters, behind, state.counters = self._counters(call.user, now)
        try:
            refused = self.ledger.reserve(counters, micros, state.day, state.endpoint)
        except Exception as exc:
            state.shares = ()
            logger.error("usage ledger unavailable (%s): refusing paid calls", type(exc).__name__)
            raise budget_unavailable() from None
        if refused >= 0:
            state.shares = ()
            budget, resets_at = behind[refused]
            call.notes["cost_usd"] = 0.0
            call.notes["estimated"] = False
            raise budget_exceeded(budget, resets_at)
        state.reserved = micros

    # -- the observer -----------------------------------------------------------

    def admit(self, call: Call, request: flask.Request) -> None:
        if self.identify is not None:
            call.user = self.user_of(request)
        now = time.time()
        day = self._today(now)
        if call.upstream == "fal":
            self._admit_fal(call, now, day)
        elif call.upstream in ("anthropic", "openai"):
            state = _State("tokens", (), day, f"{call.upstream}:{call.endpoint}")
            call.notes[_STATE] = state
            # The answer names the model; the request body is not parsed for it.
            state.reader = UsageReader("", "")
            # Priced after the answer: refused only when a budget is already spent.
            self._reserve(call, state, 0, now)
        elif call.upstream == "elevenlabs":
            state = _State("characters", (), day, f"elevenlabs:{call.endpoint}")
            call.notes[_STATE] = state
            payload = parse_json(call.body)
            text = payload.get("text") if isinstance(payload, dict) else None
            characters = len(text) if isinstance(text, str) else 0
            micros = to_micros(characters * self.prices.elevenlabs_per_character)
            self._reserve(call, state, micros, now)
            call.notes["cost_usd"] = from_micros(micros)
            call.notes["estimated"] = False
        else:
            call.notes[_STATE] = _State("free", (), day, call.endpoint)

    def _admit_fal(self, call: Call, now: float, day: str) -> None:
        """Which of fal's calls this is, and the estimate it reserves if it starts paid work.

        A queue result fetch and the queue's status and cancel calls start
        nothing: the fetch settles what its submit reserved, the rest are free.
        """
        inputs = call.notes.get("fal_inputs")
        if not call.url and isinstance(inputs, list):
            self._admit_facade(call, inputs, now, day)
            return
        host, path = _host_and_path(call.url or "")
        if host == "queue.fal.run" and call.method == "GET" and _queue_result_id(path):
            state = _State("fal_result", (), day, call.endpoint)
            state.request_id = _queue_result_id(path)
            call.notes[_STATE] = state
            return
        queue_submit = host == "queue.fal.run" and _is_queue_submit(call.method, path)
        if not (queue_submit or host == "fal.run"):
            call.notes[_STATE] = _State("free", (), day, call.endpoint)
            return
        endpoint = path[: -len("/stream")] if path.endswith("/stream") else path
        state = _State("queue_submit" if queue_submit else "fal_run", (), day, endpoint)
        call.notes[_STATE] = state
        price = self.price_book.price(endpoint)
        micros = 0
        if price is not None:
            state.unit_price = price.unit_price
            micros = _estimate(price, read_input(price.unit, call.body))
        self._reserve_estimate(call, state, micros, now)
        if queue_submit:
            state.body = bytearray()

    def _admit_facade(self, call: Call, inputs: list[Any], now: float, day: str) -> None:
        """Reserve the facade's jobs together, one share per input.

        Each job's share is settled or released on its own, as its submit
        and result answers arrive.
        """
        state = _State("facade", (), day, call.endpoint)
        state.several_jobs()
        call.notes[_STATE] = state
        price = self.price_book.price(call.endpoint)
        if price is not None:
            state.unit_price = price.unit_price
            state.shares.extend(_estimate(price, item) for item in inputs)
        else:
            state.shares.extend(0 for _ in inputs)
        self._reserve_estimate(call, state, sum(state.shares), now)

    def _reserve_estimate(self, call: Call, state: _State, micros: int, now: float) -> None:
        """Reserve fal's estimate; the call's cost is an estimate until fal's units settle it."""
        self._reserve(call, state, micros, now)
        state.estimated = True
        call.notes["cost_usd"] = from_micros(micros)
        call.notes["estimated"] = True

    def response(
        self, call: Call, method: str, url: str, status: int, headers: Mapping[str, str]
    ) -> None:
        state: _State | None = call.notes.get(_STATE)
        if state is None:
            return
        try:
            if state.kind == "facade":
                self._facade_answer(call, state, method, url, status, headers)
            else:
                self._answer(call, state, status, headers)
        except Exception:
            logger.exception("usage: could not account for an answer of %s", state.endpoint)

    def _answer(self, call: Call, state: _State, status: int, headers: Mapping[str, str]) -> None:
        """Settle, release or keep the reservation as the provider's answer says.

        The call has one answer, so its kind alone says what to do with it;
        only the facade's calls have several (see ``_facade_answer``).
        """
        kind = state.kind
        state.answered = True
        if kind == "tokens":
            if status < 400 and state.reader is not None:
                state.reader = UsageReader(
                    state.reader.count.model, headers.get("content-type", "")
                )
            else:
                state.reader = None
        elif kind in ("fal_run", "queue_submit", "characters"):
            if status >= 400:
                self._release(state)
            elif kind == "fal_run":
                units = _units(headers)
                if units is not None:
                    call.units = units
                    self._settle(state, state.reserved, units)
            elif kind == "queue_submit":
                request_id = headers.get("x-fal-request-id")
                if request_id:
                    self._keep_for_result(state, request_id)
        elif kind == "fal_result" and status == 200 and state.request_id:
            if not self._settle_result(call, state, headers):
                return
        self._note(call, state)

    def _settle_result(self, call: Call, state: _State, headers: Mapping[str, str]) -> bool:
        """Settle the submit a queue result belongs to; False if there is nothing to settle.

        The submit's reservation is found in the ledger by request id, since
        the fetch may reach another instance than the submit did.
        """
        units = _units(headers)
        if units is None or state.request_id is None:
            return False
        call.units = units
        pending = self.ledger.take_pending(state.request_id[:_MAX_ID])
        if pending is None:
            # Not reserved here, or already settled by an earlier fetch.
            return False
        actual = to_micros(units * pending.unit_price)
        # For the metrics: the submit's estimate leaves the reserved books.
        call.notes["released_usd"] = from_micros(pending.micros)
        call.notes["cost_endpoint"] = pending.endpoint
        self.ledger.adjust(pending.counters, actual - pending.micros, pending.day, pending.endpoint)
        state.settled += actual
        return True

    def _facade_answer(
        self,
        call: Call,
        state: _State,
        method: str,
        url: str,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        path = _host_and_path(url)[1]
        request_id = headers.get("x-fal-request-id")
        with state.lock:
            state.answered = True
            if _is_queue_submit(method, path):
                share = state.shares.popleft() if state.shares else 0
                if status >= 400:
                    self._unreserve(state, share)
                elif request_id:
                    state.jobs[request_id] = share
                else:
                    state.unnamed.append(share)
            elif method == "GET" and status == 200 and _queue_result_id(path):
                units = _units(headers)
                if units is None:
                    return
                rid = _queue_result_id(path) or ""
                share = state.jobs.pop(rid, None)
                if share is None:
                    share = state.unnamed.popleft() if state.unnamed else None
                if share is None:
                    return
                self._settle(state, share, units)
                call.units = (call.units or 0.0) + units
            self._note(call, state)

    def chunk(self, call: Call, data: bytes) -> None:
        state: _State | None = call.notes.get(_STATE)
        if state is None:
            return
        if state.reader is not None and state.answered:
            state.reader.feed(data)
        elif state.body is not None and len(state.body) + len(data) <= _SUBMIT_BODY_LIMIT:
            state.body += data

    def finish(self, call: Call) -> None:
        state: _State | None = call.notes.get(_STATE)
        try:
            if state is not None:
                self._finish(call, state)
        except Exception:
            logger.exception("usage: could not settle a call to %s", call.endpoint[:200])
        if state is not None or call.refusal == "budget_exceeded":
            write_record(call)

    def _finish(self, call: Call, state: _State) -> None:
        kind = state.kind
        if kind == "tokens":
            if state.reader is not None and state.answered:
                self._charge_tokens(call, state, state.reader.close())
            return
        if kind == "facade":
            with state.lock:
                submitted = state.answered
                failed = call.status is None or 400 <= call.status < 500
                if submitted or failed:
                    # Jobs never submitted (the call failed or was refused
                    # first). With no submit seen, a 5xx or success may have
                    # run them: their estimates stand.
                    unsent = sum(state.shares)
                    if unsent:
                        self._unreserve(state, unsent)
                state.shares.clear()
                self._note(call, state)
            return
        if state.reserved and not state.answered and call.status != 504:
            # Nothing reached the provider (refused after admit, or unreachable);
            # a timeout may have started the work, so its estimate stands.
            self._release(state)
        elif kind == "queue_submit" and state.reserved and state.body is not None:
            answer = parse_json(bytes(state.body))
            request_id = answer.get("request_id") if isinstance(answer, dict) else None
            if isinstance(request_id, str) and request_id:
                self._keep_for_result(state, request_id)
        state.body = None
        self._note(call, state)

    # -- money movements --------------------------------------------------------

    def _adjust(self, state: _State, micros: int) -> None:
        if micros and state.counters:
            self.ledger.adjust(state.counters, micros, state.day, state.endpoint)
        elif micros:
            self.ledger.adjust((), micros, state.day, state.endpoint)

    def _unreserve(self, state: _State, share: int) -> None:
        """Take ``share`` off the books: the work it was reserved for never started."""
        self._adjust(state, -share)
        state.reserved -= share

    def _release(self, state: _State) -> None:
        self._unreserve(state, state.reserved)
        state.body = None

    def _settle(self, state: _State, share: int, units: float) -> None:
        actual = to_micros(units * state.unit_price)
        self._adjust(state, actual - share)
        state.reserved -= share
        state.settled += actual

    def _keep_for_result(self, state: _State, request_id: str) -> None:
        if not state.reserved and not state.unit_price:
            return  # unpriced: nothing to settle
        pending = Pending(
            state.counters, state.reserved, state.unit_price, state.endpoint, state.day
        )
        self.ledger.put_pending(request_id[:_MAX_ID], pending)
        # The submit's own record keeps the estimate; the result fetch settles it.
        state.body = None
        state.request_id = request_id

    def _charge_tokens(self, call: Call, state: _State, count: Any) -> None:
        call.notes["tokens"] = {
            "model": count.model,
            "input": count.input + count.cache_write + count.cache_read,
            "output": count.output,
        }
        price = self.tokens.per_token(count.model) if count.model else None
        micros = 0
        if price is not None:
            per_in, per_out = price
            usd = (
                count.input * per_in
                + count.cache_write * per_in * CACHE_WRITE_FACTOR
                + count.cache_read * per_in * CACHE_READ_FACTOR
                + count.output * per_out
            )
            micros = to_micros(usd)
        state.endpoint = f"{call.upstream}:{count.model}" if count.model else state.endpoint
        self._adjust(state, micros)
        state.settled += micros
        self._note(call, state)

    def _note(self, call: Call, state: _State) -> None:
        if state.kind == "free":
            return
        if state.kind == "queue_submit" and state.request_id:
            call.notes["cost_usd"] = from_micros(state.reserved)
            call.notes["estimated"] = True
            return
        call.notes["cost_usd"] = from_micros(state.settled + state.reserved)
        call.notes["estimated"] = bool(state.reserved) and state.kind != "characters"

    # -- what a caller sees -----------------------------------------------------

    def report(self, user: str | None, now: datetime | None = None) -> dict[str, Any]:
        """The caller's budgets and the app's spend per endpoint today (the usage route)."""
        now = now or datetime.now(timezone.utc)
        applying = [(b, b.counter(user, now)) for b in self.budgets]
        applying = [(b, name) for b, name in applying if name is not None]
        spent = self.ledger.spent([name for _, name in applying])
        budgets = []
        for (budget, _), micros in zip(applying, spent, strict=True):
            _, end = budget.window(now)
            budgets.append(
                {
                    "scope": budget.scope,
                    "per": budget.per,
                    "usd": budget.usd,
                    "spent_usd": from_micros(micros),
                    "remaining_usd": from_micros(max(budget.limit_micros - micros, 0)),
                    "resets_at": iso(end),
                }
            )
        today = self.ledger.endpoints(now.strftime("%Y-%m-%d"))
        endpoints = sorted(today.items(), key=lambda item: -item[1])[:20]
        return {
            "user": user,
            "budgets": budgets,
            "endpoints_today": [
                {"endpoint": name, "spent_usd": from_micros(micros)}
                for name, micros in endpoints
                if micros > 0
            ],
        }
