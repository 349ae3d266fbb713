"""Budgets hold under concurrency, settle from fal's units, and refuse in one shape."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

import flask
import pytest
from providers.conftest import redis_url  # noqa: F401  (a real redis-server, by PID)
from usage_support import KEY, drive

from flask_fal_proxy.testing import FakeFal
from flask_fal_proxy.usage import Budget, Prices, track_usage

IMAGE = "fal-ai/test-image"
MEGA = "fal-ai/test-megapixel"


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    with FakeFal(key=KEY, stream_delay=0.0) as fake:
        fake.set_price(IMAGE, 0.01, "image")
        fake.set_price(MEGA, 0.025, "megapixel")
        yield fake


@pytest.fixture(autouse=True)
def _fresh(fal: FakeFal) -> None:
    fal.calls.clear()
    fal.pricing_calls.clear()
    fal.billable_units.clear()


def make_app(fal: FakeFal, **options: object) -> flask.Flask:
    app = flask.Flask("usage-under-test")
    app.config["FAL_KEY"] = KEY
    options.setdefault("identify", lambda request: request.headers.get("x-user"))
    options.setdefault("session", fal.session())
    track_usage(app, **options)  # type: ignore[arg-type]
    return app


def run_together(count: int, work) -> list:  # type: ignore[no-untyped-def]
    results: list = [None] * count
    start = threading.Barrier(count)

    def one(i: int) -> None:
        start.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def fal_runs(fal: FakeFal) -> int:
    return sum(1 for c in fal.calls if c.host == "fal.run")


def spent(app: flask.Flask, user: str | None = None) -> dict[str, float]:
    tracker = app.extensions["flask_fal_proxy.usage"]
    return {f"{b['scope']}/{b['per']}": b["spent_usd"] for b in tracker.report(user)["budgets"]}


def test_a_user_budget_holds_under_concurrent_calls(fal: FakeFal) -> None:
    app = make_app(fal, budgets=[Budget(0.10, per="day", scope="user")])
    session = fal.session()
    url = f"https://fal.run/{IMAGE}"

    results = run_together(
        16, lambda i: drive(app, session, "POST", url, {"prompt": "x"}, user="ann")[1]
    )

    refused = [e for e in results if e is not None]
    assert len(refused) == 6 and fal_runs(fal) == 10
    assert {e.code for e in refused} == {"budget_exceeded"}
    assert spent(app, "ann") == {"user/day": pytest.approx(0.10)}
    # Another user's budget is their own.
    call, error, _ = drive(app, session, "POST", url, {"prompt": "x"}, user="bob")
    assert error is None and call.status == 200 and fal_runs(fal) == 11


def test_a_total_budget_holds_across_users(fal: FakeFal) -> None:
    app = make_app(
        fal,
        budgets=[Budget(1, per="day", scope="user"), Budget(0.05, per="month", scope="total")],
    )
    session = fal.session()
    url = f"https://fal.run/{IMAGE}"

    results = run_together(
        12, lambda i: drive(app, session, "POST", url, {}, user=f"user{i % 4}")[1]
    )

    assert sum(e is None for e in results) == 5 and fal_runs(fal) == 5
    assert spent(app, None) == {"total/month": pytest.approx(0.05)}


def test_the_refusal_names_the_budget_and_its_reset(fal: FakeFal) -> None:
    app = make_app(fal, budgets=[Budget(0.01, per="hour", scope="user")])
    session = fal.session()
    url = f"https://fal.run/{IMAGE}"
    drive(app, session, "POST", url, {}, user="ann")

    call, error, _ = drive(app, session, "POST", url, {}, user="ann")

    assert error is not None and error.status == 402 and error.code == "budget_exceeded"
    assert error.headers == {"x-should-retry": "false"}
    now = datetime.now(timezone.utc)
    next_hour = f"{now:%Y-%m-%dT%H}:00:00Z"
    assert "hourly budget of $0.01 for this user" in error.message
    assert "resets at" in error.message and error.message != next_hour
    body = json.loads(error.get_response().get_data())
    assert body == {"message": error.message, "code": "budget_exceeded"}
    assert call.refusal == "budget_exceeded" and fal_runs(fal) == 1


def test_fal_run_is_settled_from_the_billable_units(fal: FakeFal) -> None:
    app = make_app(fal, budgets=[Budget(5, per="day", scope="user")])
    fal.billable_units[MEGA] = 3.5  # what fal billed, not what the input suggests
    payload = {"prompt": "x", "image_size": "square_hd", "num_images": 2}

    call, error, _ = drive(app, fal.session(), "POST", f"https://fal.run/{MEGA}", payload, user="a")

    assert error is None and call.units == 3.5
    assert call.notes["cost_usd"] == pytest.approx(3.5 * 0.025)
    assert call.notes["estimated"] is False
    assert spent(app, "a") == {"user/day": pytest.approx(3.5 * 0.025)}


def test_the_estimate_reads_the_input_before_anything_is_sent(fal: FakeFal) -> None:
    # 2 images of square_hd at $0.025 per megapixel: $0.05 reserved; $0.04 left refuses it.
    app = make_app(fal, budgets=[Budget(0.04, per="day", scope="user")])
    payload = {"prompt": "x", "image_size": "square_hd", "num_images": 2}

    _, error, _ = drive(app, fal.session(), "POST", f"https://fal.run/{MEGA}", payload, user="a")

    assert error is not None and error.code == "budget_exceeded" and fal_runs(fal) == 0


def test_a_refused_submit_is_released(fal: FakeFal) -> None:
    endpoint = "fal-ai/validation-error"
    fal.set_price(endpoint, 1.0, "image")
    app = make_app(fal, budgets=[Budget(5, per="day", scope="user")])

    call, _, _ = drive(
        app, fal.session(), "POST", f"https://queue.fal.run/{endpoint}", {}, user="a"
    )

    assert call.status == 422 and call.notes["cost_usd"] == 0.0
    assert spent(app, "a") == {"user/day": 0.0}


def test_an_unpriced_endpoint_costs_nothing_and_is_logged_once(
    fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(fal, budgets=[Budget(5, per="day", scope="user")])
    for _ in range(3):
        call, error, _ = drive(
            app, fal.session(), "POST", "https://fal.run/fal-ai/nobody-prices", {}
        )
        assert error is None and call.notes["cost_usd"] == 0.0
    lines = [r for r in caplog.records if "no known price" in r.getMessage()]
    assert len(lines) == 1 and "fal-ai/nobody-prices" in lines[0].getMessage()


def test_queue_jobs_settle_at_the_result_fetch_on_another_instance(
    fal: FakeFal,
    redis_url: str,  # noqa: F811  (the fixture imported above)
) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    budgets = [Budget(1, per="day", scope="user"), Budget(10, per="month", scope="total")]
    one, two = (make_app(fal, budgets=budgets, storage_uri=redis_url) for _ in range(2))
    fal.billable_units[MEGA] = 7  # estimate: 1 image of landscape_4_3 = 1 megapixel
    session = fal.session()

    submit, error, body = drive(one, session, "POST", f"https://queue.fal.run/{MEGA}", {}, user="a")
    assert error is None and submit.notes == {
        "cost_usd": 0.025,
        "estimated": True,
        "usage_state": submit.notes["usage_state"],
    }
    request_id = json.loads(body)["request_id"]
    assert spent(two, "a") == {"user/day": 0.025, "total/month": 0.025}

    base = f"https://queue.fal.run/fal-ai/test-megapixel/requests/{request_id}"
    for _ in range(3):
        drive(two, session, "GET", f"{base}/status", user="a")
    fetch, _, _ = drive(two, session, "GET", base, user="a")
    again, _, _ = drive(one, session, "GET", base, user="a")

    assert fetch.status == 200 and fetch.units == 7
    assert fetch.notes["cost_usd"] == pytest.approx(7 * 0.025) and not fetch.notes["estimated"]
    assert again.notes.get("cost_usd", 0.0) == 0.0  # settled once, whoever fetches again
    expected = pytest.approx(7 * 0.025)
    assert spent(one, "a") == {"user/day": expected, "total/month": expected}


def test_two_instances_share_one_budget_through_redis(
    fal: FakeFal,
    redis_url: str,  # noqa: F811  (the fixture imported above)
) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    budgets = [Budget(0.07, per="day", scope="user"), Budget(0.09, per="month", scope="total")]
    apps = [make_app(fal, budgets=budgets, storage_uri=redis_url) for _ in range(2)]
    sessions = [fal.session(), fal.session()]
    url = f"https://fal.run/{IMAGE}"

    results = run_together(
        20,
        lambda i: drive(
            apps[i % 2], sessions[i % 2], "POST", url, {}, user="ann" if i < 14 else "bob"
        )[1],
    )

    passed = sum(e is None for e in results)
    assert fal_runs(fal) == passed <= 9
    ann, total = spent(apps[0], "ann"), spent(apps[1], None)
    assert ann["user/day"] <= 0.07 + 1e-9 and total["total/month"] <= 0.09 + 1e-9
    assert total["total/month"] == pytest.approx(passed * 0.01)


def test_usage_route_shows_the_callers_budgets_and_todays_endpoints(fal: FakeFal) -> None:
    app = make_app(
        fal, budgets=[Budget(5, per="day", scope="user"), Budget(200, per="month", scope="total")]
    )
    drive(app, fal.session(), "POST", f"https://fal.run/{IMAGE}", {"num_images": 3}, user="ann")

    answer = app.test_client().get("/api/usage", headers={"x-user": "ann"})

    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    now = datetime.now(timezone.utc)
    tomorrow = (now.replace(hour=0, minute=0, second=0, microsecond=0)).timestamp() + 86400
    day_reset = datetime.fromtimestamp(tomorrow, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert answer.get_json() == {
        "user": "ann",
        "budgets": [
            {
                "scope": "user",
                "per": "day",
                "usd": 5,
                "spent_usd": 0.03,
                "remaining_usd": 4.97,
                "resets_at": day_reset,
            },
            {
                "scope": "total",
                "per": "month",
                "usd": 200,
                "spent_usd": 0.03,
                "remaining_usd": 199.97,
                "resets_at": answer.get_json()["budgets"][1]["resets_at"],
            },
        ],
        "endpoints_today": [{"endpoint": IMAGE, "spent_usd": 0.03}],
    }
    assert answer.get_json()["budgets"][1]["resets_at"].endswith("-01T00:00:00Z")
    anonymous = app.test_client().get("/api/usage").get_json()
    assert anonymous["user"] is None and [b["scope"] for b in anonymous["budgets"]] == ["total"]


def test_one_record_line_per_call_without_key_or_body(
    fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(fal, budgets=[Budget(0.01, per="day", scope="user")])
    payload = {"prompt": "a secret prompt"}
    drive(app, fal.session(), "POST", f"https://fal.run/{IMAGE}", payload, user="ann")
    drive(app, fal.session(), "POST", f"https://fal.run/{IMAGE}", payload, user="ann")

    lines = [
        r for r in caplog.records if r.name == "flask_fal_proxy.usage" and r.levelno == logging.INFO
    ]
    records = [json.loads(r.getMessage()) for r in lines]
    assert len(records) == 2
    first, refused = records
    assert {k: first[k] for k in ("face", "upstream", "user", "method", "endpoint", "status")} == {
        "face": "fal_proxy",
        "upstream": "fal",
        "user": "ann",
        "method": "POST",
        "endpoint": IMAGE,
        "status": 200,
    }
    assert first["cost_usd"] == 0.01 and first["estimated"] is False and first["units"] == 1
    assert first["request_id"] and first["bytes_in"] > 0 and first["bytes_out"] > 0
    assert first["duration_ms"] >= 0
    assert refused["status"] == 402 and refused["refusal"] == "budget_exceeded"
    assert refused["cost_usd"] == 0.0 and refused["bytes_out"] == 0
    for record in lines:
        assert KEY not in record.getMessage() and "secret prompt" not in record.getMessage()


def test_prices_override_fal_and_take_a_unit(fal: FakeFal) -> None:
    app = make_app(
        fal,
        budgets=[Budget(5, per="day", scope="user")],
        prices={IMAGE: 0.5, MEGA: (0.1, "megapixel")},
    )
    payload = {"image_size": {"width": 2048, "height": 1024}, "num_images": 1}

    call, _, _ = drive(
        app, fal.session(), "POST", f"https://queue.fal.run/{MEGA}", payload, user="a"
    )

    assert call.notes["cost_usd"] == pytest.approx(0.2)
    assert not fal.pricing_calls
    assert isinstance(Prices.of({IMAGE: 1}), Prices)


def test_budgets_fail_closed_when_the_ledger_is_unreachable(fal: FakeFal) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = make_app(fal, budgets=[Budget(5, per="day")], storage_uri=f"redis://127.0.0.1:{port}/0")

    _, error, _ = drive(app, fal.session(), "POST", f"https://fal.run/{IMAGE}", {}, user="a")
    poll, _, _ = drive(
        app, fal.session(), "GET", f"https://queue.fal.run/{IMAGE}/requests/x/status"
    )

    assert error is not None and (error.status, error.code) == (503, "budget_unavailable")
    assert poll.status == 404 and fal_runs(fal) == 0  # the free call still goes through
