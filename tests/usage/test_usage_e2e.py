"""Budgets through the real faces: ``@fal-ai/client`` on two gunicorn instances sharing Redis.

The example app runs unchanged under gunicorn, twice, with one
``USAGE_STORAGE_URI``; a fake fal in this process prices and bills every
call. One visitor spends through both instances at once, and fal must see
exactly the calls the budget covers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from e2e.harness import clean_env, gunicorn, require_node, run_node
from providers.conftest import redis_url  # noqa: F401  (a real redis-server, by PID)

from flask_fal_proxy.testing import FakeFal

pytestmark = pytest.mark.e2e

KEY = "usage-e2e-" + secrets.token_hex(8)
MODEL = "fal-ai/flux/schnell"
PRICE = 0.003  # the fake's price per megapixel; a default image is one megapixel


@pytest.fixture(scope="module")
def fal() -> Iterator[FakeFal]:
    with FakeFal(key=KEY, stream_delay=0.0) as fake:
        yield fake


@pytest.fixture
def instances(
    fal: FakeFal,
    redis_url: str,  # noqa: F811  (the fixture imported above)
) -> Iterator[tuple[str, str]]:
    import redis

    require_node()
    redis.Redis.from_url(redis_url).flushdb()
    env = clean_env(
        FAL_KEY=KEY,
        FAL_PROXY_FAKE_PORT=str(fal.port),
        SECRET_KEY="usage-e2e",
        USAGE_STORAGE_URI=redis_url,
        USAGE_USD_PER_DAY="0.02",
        USAGE_USD_PER_MONTH="1",
    )
    servers = [gunicorn("example_app.app:app", env) for _ in range(2)]
    try:
        yield servers[0].url, servers[1].url
    finally:
        for server in servers:
            server.stop()


def paid_calls(fal: FakeFal) -> int:
    return sum(
        1
        for c in fal.calls
        if c.host == "fal.run" or (c.host == "queue.fal.run" and c.method == "POST")
    )


def test_one_visitor_cannot_overdraw_through_two_instances(
    fal: FakeFal, instances: tuple[str, str]
) -> None:
    fal.calls.clear()
    result = run_node("usage_budget.mjs", *instances, "concurrent", timeout=120)

    passed = [r for r in result["results"] if r["ok"]]
    refused = [r for r in result["results"] if not r["ok"]]
    assert len(passed) == 6 == paid_calls(fal)  # $0.02 / $0.003
    assert {(r["status"], r["code"]) for r in refused} == {(402, "budget_exceeded")}
    assert "daily budget of $0.02 for this user" in refused[0]["message"]
    day = result["usage"]["budgets"][0]
    assert day["spent_usd"] == pytest.approx(6 * PRICE) and day["spent_usd"] <= 0.02


def test_a_queue_job_is_settled_by_the_instance_that_fetches_it(
    fal: FakeFal, instances: tuple[str, str]
) -> None:
    fal.calls.clear()
    fal.billable_units[MODEL] = 5  # not what the input suggests (2 images of 1 megapixel)
    try:
        result = run_node("usage_budget.mjs", *instances, "crossInstance", timeout=120)
    finally:
        fal.billable_units.pop(MODEL)

    assert result["images"] >= 1
    assert result["before"]["budgets"][0]["spent_usd"] == pytest.approx(2 * PRICE)
    assert result["after"]["budgets"][0]["spent_usd"] == pytest.approx(5 * PRICE)
    assert result["after"]["endpoints_today"] == [{"endpoint": MODEL, "spent_usd": 5 * PRICE}]
