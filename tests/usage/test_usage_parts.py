"""The parts of usage tracking on their own: periods, estimates, token reading, prices."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import flask
import pytest
from usage_support import KEY, drive

from flask_fal_proxy.admission import Call, observers
from flask_fal_proxy.testing import FakeAnthropic, FakeElevenLabs, FakeFal
from flask_fal_proxy.usage import Budget, Prices, track_usage
from flask_fal_proxy.usage.fal_prices import FalPriceBook
from flask_fal_proxy.usage.token_usage import UsageReader
from flask_fal_proxy.usage.units import estimate_units


@pytest.mark.parametrize(
    "options",
    [
        {"usd": 0},
        {"usd": -1},
        {"usd": True},
        {"usd": "5"},
        {"usd": 5, "per": "week"},
        {"usd": 5, "scope": "team"},
        {"usd": float("nan")},
    ],
)
def test_a_budget_is_checked_when_it_is_made(options: dict) -> None:
    with pytest.raises(ValueError):
        Budget(**options)


def test_periods_are_calendar_periods_in_utc() -> None:
    moment = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc)
    assert Budget(1, per="hour").window(moment)[1] == datetime(2027, 1, 1, tzinfo=timezone.utc)
    assert Budget(1, per="day").window(moment)[0] == datetime(2026, 12, 31, tzinfo=timezone.utc)
    assert Budget(1, per="month").window(moment) == (
        datetime(2026, 12, 1, tzinfo=timezone.utc),
        datetime(2027, 1, 1, tzinfo=timezone.utc),
    )
    assert Budget(1, scope="user").counter(None, moment) is None
    assert Budget(1, scope="total").counter("ann", moment) == Budget(2, scope="total").counter(
        None, moment
    )


@pytest.mark.parametrize(
    ("unit", "payload", "units"),
    [
        ("image", {}, 1),
        ("image", {"num_images": 4}, 4),
        ("images", {"num_images": "4"}, 1),
        ("megapixel", {"image_size": "square_hd", "num_images": 2}, 2),
        ("megapixel", {"image_size": "landscape_16_9"}, 1),
        ("megapixel", {"image_size": {"width": 2048, "height": 2048}}, 4),
        ("megapixel", {"width": 1536, "height": 1024}, 2),
        ("second", {"duration": "5"}, 5),
        ("second", {"duration": 8}, 8),
        ("second", {}, 1),
        ("unit", None, 1),
        ("image", {"num_images": 10**9}, 100),
    ],
)
def test_the_estimate_reads_the_input_as_fal_bills_it(
    unit: str, payload: object, units: float
) -> None:
    assert estimate_units(unit, payload) == units


ANTHROPIC_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5'
    b'-20250929","usage":{"input_tokens":25,"cache_read_input_tokens":100,"output_tokens":1}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"hi"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":7}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
OPENAI_STREAM = (
    b'data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"a"}}],"usage":null}\n\n'
    b'data: {"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}'
    b"\n\ndata: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 2, 5, 64, 10_000])
def test_tokens_are_read_from_streams_cut_anywhere(size: int) -> None:
    for stream, expected in (
        (ANTHROPIC_STREAM, ("claude-sonnet-4-5-20250929", 25, 15, 100)),
        (OPENAI_STREAM, ("gpt-4o-mini", 9, 3, 0)),
    ):
        reader = UsageReader("asked-model", "text/event-stream; charset=utf-8")
        for start in range(0, len(stream), size):
            reader.feed(stream[start : start + size])
        count = reader.close()
        assert (count.model, count.input, count.output, count.cache_read) == expected


def test_a_json_body_is_read_whole_when_small_and_by_its_tail_when_large() -> None:
    small = UsageReader("m", "application/json")
    small.feed(b'{"model":"gpt-4.1","usage":{"input_tokens":3,"output_tokens":4}}')
    assert (small.close().input, small.count.output) == (3, 4)
    large = UsageReader("claude-haiku-4-5", "application/json")
    large.feed(b'{"content":[{"text":"' + b"x" * 2_000_000 + b'"}],')
    large.feed(b'"usage":{"input_tokens":11,"output_tokens":22}}')
    count = large.close()
    assert (count.model, count.input, count.output) == ("claude-haiku-4-5", 11, 22)
    assert len(large._buffer) == 0


def test_an_over_long_event_line_is_dropped_not_kept() -> None:
    reader = UsageReader("m", "text/event-stream")
    reader.feed(b"data: " + b"y" * 1_000_000)
    assert len(reader._buffer) == 0
    reader.feed(b'y"}\n\ndata: {"usage":{"input_tokens":1,"output_tokens":2}}\n\n')
    assert (reader.close().input, reader.count.output) == (1, 2)


def test_prices_are_asked_once_for_concurrent_first_uses_and_kept_when_fal_fails() -> None:
    with FakeFal(key=KEY) as fal:
        fal.set_price("fal-ai/priced", 0.02, "image")
        fal.pricing_delay = 0.3
        book = FalPriceBook(fal.session(), lambda: f"Key {KEY}", cache_seconds=0.5)
        results: list = []
        threads = [
            threading.Thread(target=lambda: results.append(book.price("fal-ai/priced")))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        asked = fal.pricing_calls
        assert len(asked) == 1 and asked[0].headers["Authorization"] == f"Key {KEY}"
        assert asked[0].query == "endpoint_id=fal-ai/priced"
        assert {(p.unit_price, p.unit) for p in results} == {(0.02, "image")}
        fal.pricing_delay = 0.0
        assert book.price("fal-ai/priced").unit_price == 0.02
        assert len(fal.pricing_calls) == 1  # cached
    # fal is gone; the day is over: the stale price stands.
    time.sleep(0.6)
    assert book.price("fal-ai/priced").unit_price == 0.02


def test_pricing_goes_to_fal_with_the_apps_key() -> None:
    with FakeFal(key=KEY) as fal:
        app = flask.Flask("pricing-key")
        app.config["FAL_KEY"] = KEY
        tracker = track_usage(app, session=fal.session())
        fal.set_price("fal-ai/keyed", 0.5, "image")
        assert tracker.price_book.price("fal-ai/keyed").unit_price == 0.5
        (asked,) = fal.pricing_calls
        assert (asked.host, asked.path) == ("api.fal.ai", "/v1/models/pricing")


def _provider_app(session, **options) -> flask.Flask:  # type: ignore[no-untyped-def]
    app = flask.Flask("provider-usage")
    track_usage(app, identify=lambda r: r.headers.get("x-user"), session=session, **options)
    return app


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_is_charged_from_the_usage_it_reports(stream: bool) -> None:
    with FakeAnthropic(key="ak", stream_delay=0) as fake:
        app = _provider_app(
            fake.session(),
            budgets=[Budget(0.0005, per="day")],
            prices=Prices(tokens={"claude-test": (10.0, 30.0)}),
        )
        payload = {
            "model": "claude-test",
            "max_tokens": 50,
            "stream": stream,
            "messages": [{"role": "user", "content": "one two three"}],
        }
        url = "https://api.anthropic.com/v1/messages"
        headers = {"x-api-key": "ak", "anthropic-version": "2023-06-01"}
        call, error, body = drive(
            app,
            fake.session(),
            "POST",
            url,
            payload,
            user="ann",
            face="anthropic_proxy",
            upstream="anthropic",
            endpoint="v1/messages",
            headers=headers,
        )
        assert error is None and call.status == 200
        tokens = call.notes["tokens"]
        assert tokens["model"] == "claude-test" and tokens["input"] > 0 and tokens["output"] > 0
        expected = (tokens["input"] * 10 + tokens["output"] * 30) / 1e6
        assert call.notes["cost_usd"] == pytest.approx(expected, abs=1e-6)
        assert call.notes["estimated"] is False
        # Charged after the fact, so a budget can end a little past its cap;
        # the call after that is refused.
        drive(
            app,
            fake.session(),
            "POST",
            url,
            payload,
            user="ann",
            face="anthropic_proxy",
            upstream="anthropic",
            endpoint="v1/messages",
            headers=headers,
        )
        before = len(fake.calls)
        _, error, _ = drive(
            app,
            fake.session(),
            "POST",
            url,
            payload,
            user="ann",
            face="anthropic_proxy",
            upstream="anthropic",
            endpoint="v1/messages",
            headers=headers,
        )
        assert error is not None and error.code == "budget_exceeded" and len(fake.calls) == before


def _speak(app: flask.Flask, fake: FakeElevenLabs, text: str):  # type: ignore[no-untyped-def]
    """One text-to-speech call by ann through the ElevenLabs route."""
    return drive(
        app,
        fake.session(),
        "POST",
        "https://api.elevenlabs.io/v1/text-to-speech/voice1/stream",
        {"text": text},
        user="ann",
        face="elevenlabs_proxy",
        upstream="elevenlabs",
        endpoint="v1/text-to-speech/voice1/stream",
        headers={"xi-api-key": "ek"},
    )


def test_elevenlabs_is_charged_per_character_of_text() -> None:
    with FakeElevenLabs(key="ek", stream_delay=0) as fake:
        app = _provider_app(
            fake.session(),
            budgets=[Budget(0.01, per="day")],
            prices=Prices(elevenlabs_per_character=0.001),
        )
        text = "x" * 6

        def speak():  # type: ignore[no-untyped-def]
            return _speak(app, fake, text)

        call, error, _ = speak()
        assert error is None and call.notes == {
            "cost_usd": 0.006,
            "estimated": False,
            "usage_state": call.notes["usage_state"],
        }
        _, error, _ = speak()  # 0.006 + 0.006 would pass 0.01
        assert error is not None and error.code == "budget_exceeded"


def test_a_long_elevenlabs_text_is_charged_every_character() -> None:
    """A text past the size where fal inputs are scanned, not parsed, still counts whole.

    40,000 non-ASCII characters, escaped as JSON writes them, make a body of
    about 240 kB; reading it like a fal input found no text and charged $0.
    """
    with FakeElevenLabs(key="ek", stream_delay=0) as fake:
        app = _provider_app(
            fake.session(),
            budgets=[Budget(100, per="day")],
            prices=Prices(elevenlabs_per_character=0.0001),
        )
        text = "\u00e9" * 40_000
        assert len(json.dumps({"text": text}).encode()) > 3 * 64 * 1024
        call, error, _ = _speak(app, fake, text)
        assert error is None
        assert call.notes["cost_usd"] == pytest.approx(4.0)


def test_the_facade_reserves_all_jobs_at_once_and_settles_each_result() -> None:
    app = flask.Flask("facade-usage")
    tracker = track_usage(
        app,
        identify=lambda r: "ann",
        budgets=[Budget(0.2, per="day")],
        prices={"fal-ai/flux/dev": (0.025, "megapixel")},
    )
    inputs = [{"prompt": "p", "image_size": "square_hd", "num_images": 2}] * 3
    call = Call("fal_openai", "fal", "POST", endpoint="fal-ai/flux/dev")
    call.notes["fal_inputs"] = inputs
    watching = observers(app)
    with app.test_request_context("/v1/images/generations", method="POST"):
        for observer in watching:
            observer.admit(call, flask.request)
    assert call.notes["cost_usd"] == pytest.approx(0.15) and call.notes["estimated"] is True
    queue = "https://queue.fal.run/fal-ai/flux"
    # Job 1 settles at 3 units, job 2 is refused by fal, job 3 is never submitted.
    tracker.response(call, "POST", f"{queue}/dev", 200, {"x-fal-request-id": "r1"})
    tracker.response(call, "GET", f"{queue}/requests/r1/status", 200, {})
    tracker.response(call, "POST", f"{queue}/dev", 422, {})
    assert tracker.report("ann")["budgets"][0]["spent_usd"] == pytest.approx(0.10)
    tracker.response(call, "GET", f"{queue}/requests/r1", 200, {"x-fal-billable-units": "3"})
    call.status, call.finished = 200, time.monotonic()
    tracker.finish(call)
    assert call.units == 3 and call.notes["cost_usd"] == pytest.approx(0.075)
    assert call.notes["estimated"] is False
    assert tracker.report("ann")["budgets"][0]["spent_usd"] == pytest.approx(0.075)
    # 0.075 spent of 0.2: three more jobs of 0.05 would pass it.
    again = Call("fal_openai", "fal", "POST", endpoint="fal-ai/flux/dev")
    again.notes["fal_inputs"] = inputs
    with app.test_request_context("/v1/images/generations", method="POST"):
        with pytest.raises(Exception) as refused:
            tracker.admit(again, flask.request)
    assert getattr(refused.value, "code", None) == "budget_exceeded"


def test_the_record_carries_the_token_counts(caplog: pytest.LogCaptureFixture) -> None:
    with FakeAnthropic(key="ak", stream_delay=0) as fake:
        app = _provider_app(fake.session())
        drive(
            app,
            fake.session(),
            "POST",
            "https://api.anthropic.com/v1/messages",
            {
                "model": "claude-haiku-4-5",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
            face="anthropic_proxy",
            upstream="anthropic",
            endpoint="v1/messages",
            headers={"x-api-key": "ak", "anthropic-version": "2023-06-01"},
        )
    (line,) = [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_fal_proxy.usage" and r.levelname == "INFO"
    ]
    record = json.loads(line)
    assert record["tokens"]["model"] == "claude-haiku-4-5" and record["user"] is None
    assert "ak" not in json.dumps({k: v for k, v in record.items() if k != "tokens"}).split('"')


def test_a_large_input_is_estimated_without_building_it():
    # A data URI makes a fal input tens of MiB; building it to read num_images
    # would cost what the body check was made to avoid.
    import json as _json
    import tracemalloc

    from flask_fal_proxy.usage.units import read_input

    body = _json.dumps(
        {
            "image_url": "data:image/png;base64," + "A" * (8 << 20),
            "num_images": 3,
            "image_size": "square_hd",
            "duration": 4,
        }
    ).encode()
    tracemalloc.start()
    fields = read_input("megapixel", body)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert fields == {"num_images": 3, "image_size": "square_hd", "duration": 4}
    assert peak < len(body) // 16


def _large(*fields: str) -> bytes:
    """A fal input past the parsing limit, its fields written as given (duplicates kept)."""
    image = '"image_url": "data:image/png;base64,' + "A" * (1 << 20) + '"'
    return ("{" + ", ".join([image, *fields]) + "}").encode()


@pytest.mark.parametrize(
    ("body", "images"),
    [
        # A JSON parser (and fal) keeps the last of a repeated name.
        (b'{"num_images": 1, "prompt": "p", "num_images": 4}', 4),
        (_large('"num_images": 1', '"num_images": 4'), 4),
        # A scan cannot tell which one fal keeps, so it takes the costlier.
        (_large('"num_images": 4', '"num_images": 1'), 4),
        # An escaped key is the same key to fal.
        (b'{"num_\\u0069mages": 4}', 4),
        (_large('"num_\\u0069mages": 4'), 4),
        (_large('"num\\u005fimages": 3'), 3),
        # Inside a string, a quote is escaped: no key there.
        (_large('"prompt": "say \\"num_images\\": 9"', '"num_images": 2'), 2),
        (b'{"prompt": "no count here"}', 1),
    ],
)
def test_an_input_is_estimated_at_the_images_fal_will_make(body: bytes, images: int) -> None:
    from flask_fal_proxy.usage.units import estimate_units, read_input

    assert estimate_units("image", read_input("image", body)) == images


def test_a_large_input_is_estimated_at_its_largest_image_size() -> None:
    from flask_fal_proxy.usage.units import image_pixels, read_input

    body = _large('"image_size": "square"', '"image_size": {"width": 2048, "height": 2048}')
    assert image_pixels(read_input("megapixel", body)) == (2048, 2048)
