"""The limiter speaks for itself only, and a dead or stalled Redis neither hangs nor floods.

Each test that breaks the backend starts its own redis-server (with a
password, as a deployer's would have), kills it or stops it with SIGSTOP by
its PID, and looks at what the clients got and what was logged: a JSON 503
in the route's shape within about a second (or the call let through, if the
deployer chose so), one log line when the outage starts and one when it
ends, the password in none of them. Health probes never touch the limiter,
and an answer that came back from the provider is never replaced.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import flask
import pytest

from flask_fal_proxy.openai_compat import create_openai_blueprint
from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.rate_limits import describe_backend, limit_proxy_routes
from flask_fal_proxy.relay import default_session
from providers.provider_support import ANTHROPIC_KEY, ELEVENLABS_KEY, RedisServer

PASSWORD = "redis-pa55word-never-logged"
FACADE_KEY = "facade-client-key"
MESSAGE = {"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
LIMITS = {"anthropic_proxy": "50/minute", "fal_openai": "50/minute"}


def app_for(fakes, limits=LIMITS, **options):
    anthropic, elevenlabs = fakes
    app = flask.Flask("limited")
    app.config.update(ANTHROPIC_API_KEY=ANTHROPIC_KEY, ELEVENLABS_API_KEY=ELEVENLABS_KEY)
    app.register_blueprint(create_provider_blueprint("anthropic", session=anthropic.session()))
    app.register_blueprint(create_provider_blueprint("elevenlabs", session=elevenlabs.session()))
    app.register_blueprint(
        create_openai_blueprint(
            models="flux-dev:fal-ai/flux/dev",
            access_keys=[FACADE_KEY],
            fal_keys=["fal-never-called"],
            session=default_session(),
        )
    )
    limiter = limit_proxy_routes(app, limits, **options)
    return app, limiter


def message(client, model="claude-test"):
    return client.post(
        "/api/anthropic/v1/messages",
        json={**MESSAGE, "model": model},
        headers={"anthropic-version": "2023-06-01"},
    )


def generation(client):
    return client.post(
        "/v1/images/generations",
        json={"model": "flux-dev", "prompt": "a lighthouse"},
        headers={"Authorization": f"Bearer {FACADE_KEY}"},
    )


def backend_lines(caplog):
    return [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("rate limit backend")
    ]


def assert_quiet_about_secrets(caplog):
    for record in caplog.records:
        assert PASSWORD not in record.getMessage()


def timed(call, *args):
    start = time.monotonic()
    answer = call(*args)
    return answer, time.monotonic() - start


def test_the_providers_retry_after_is_relayed_as_received(fakes):
    client = app_for(fakes)[0].test_client()
    answer = message(client)
    assert answer.status_code == 200
    assert "Retry-After" not in answer.headers
    assert not [name for name in answer.headers.keys() if name.lower().startswith("x-ratelimit")]
    refused = message(client, model="claude-rate-limited")
    assert refused.status_code == 429
    assert refused.headers.getlist("Retry-After") == ["7"]
    assert refused.get_json()["error"]["type"] == "rate_limit_error"
    assert "X-RateLimit-Limit" not in refused.headers


def test_the_limiters_own_429_has_its_headers_in_each_faces_shape(fakes):
    client = app_for(fakes, {"anthropic_proxy": "1/minute", "fal_openai": "1/minute"})[
        0
    ].test_client()
    assert message(client).status_code == 200
    refused = message(client)
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > time.time()
    assert generation(client).status_code != 429
    facade = generation(client)
    assert facade.status_code == 429
    assert facade.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(facade.headers["Retry-After"]) <= 60


def test_health_probes_are_never_limited(fakes):
    client = app_for(fakes, {"fal_openai": "1/minute"})[0].test_client()
    assert [client.get("/health").status_code for _ in range(5)] == [200] * 5


def test_a_dead_backend_is_a_quick_json_503_logged_once(fakes, caplog):
    with RedisServer(password=PASSWORD) as redis:
        app, _ = app_for(fakes, storage_uri=redis.url)
        client = app.test_client()
        assert message(client).status_code == 200
        redis.proc.kill()
        redis.proc.wait()
        calls_before = len(fakes[0].calls)
        for _ in range(5):
            answer, took = timed(message, client)
            assert answer.status_code == 503, answer.get_data()
            assert answer.get_json()["code"] == "rate_limit_unavailable"
            assert took < 0.5
            facade, took = timed(generation, client)
            assert facade.status_code == 503
            assert facade.get_json()["error"]["code"] == "rate_limit_unavailable"
            assert facade.get_json()["error"]["type"] == "server_error"
            assert took < 0.5
            assert client.get("/health").status_code == 200
            assert client.options("/api/anthropic/v1/messages").status_code != 503
        # Unlimited routes are not the limiter's business.
        speech = client.post("/api/elevenlabs/v1/sound-generation", json={"text": "rain"})
        assert speech.status_code == 200
    assert len(fakes[0].calls) == calls_before
    lines = backend_lines(caplog)
    assert lines == [
        f"rate limit backend redis://127.0.0.1:{redis.port}/0 is unavailable (ConnectionError); "
        "limited calls are refused with 503 rate_limit_unavailable until it answers"
    ]
    assert [r.levelname for r in caplog.records if r.getMessage() in lines] == ["ERROR"]
    # Not one line per refused call either, from the safety net or anyone else.
    assert not [r for r in caplog.records if "rate_limit_unavailable (503)" in r.getMessage()]
    assert_quiet_about_secrets(caplog)


def test_a_stalled_backend_costs_each_call_about_a_second_then_recovers(fakes, caplog):
    with RedisServer(password=PASSWORD) as redis:
        client = app_for(fakes, storage_uri=redis.url)[0].test_client()
        assert message(client).status_code == 200
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                answer, took = timed(message, client)
                assert answer.status_code == 503
                assert answer.get_json()["code"] == "rate_limit_unavailable"
                assert took < 1.2
            assert client.get("/health").status_code == 200
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        assert message(client).status_code == 200
        assert message(client).status_code == 200
    lines = backend_lines(caplog)
    assert len(lines) == 2, lines
    assert "is unavailable (TimeoutError)" in lines[0]
    assert lines[1].startswith(f"rate limit backend redis://127.0.0.1:{redis.port}/0 answers again")
    assert_quiet_about_secrets(caplog)


def test_allow_mode_lets_calls_through_while_the_backend_is_down(fakes, caplog):
    with RedisServer(password=PASSWORD) as redis:
        client = app_for(fakes, storage_uri=redis.url, on_backend_error="allow")[0].test_client()
        redis.proc.kill()
        redis.proc.wait()
        statuses = [message(client).status_code for _ in range(5)]
    assert statuses == [200] * 5
    assert len(fakes[0].calls) == 5
    (line,) = backend_lines(caplog)
    assert line.endswith("(ConnectionError); limited calls go through unlimited until it answers")
    assert_quiet_about_secrets(caplog)


def test_an_answer_is_not_replaced_when_the_backend_dies_during_the_call(fakes):
    with RedisServer() as redis:
        session = fakes[0].session()
        adapter = session.get_adapter("https://api.anthropic.com")
        send = adapter.send

        def kill_redis_then_send(*args, **kwargs):
            redis.proc.kill()
            redis.proc.wait()
            return send(*args, **kwargs)

        adapter.send = kill_redis_then_send
        app = flask.Flask("dies-during-the-call")
        app.config["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY
        app.register_blueprint(create_provider_blueprint("anthropic", session=session))
        limit_proxy_routes(app, {"anthropic_proxy": "5/minute"}, storage_uri=redis.url)
        answer = message(app.test_client())
    # The generation was paid for: it reaches the client.
    assert answer.status_code == 200
    assert answer.get_json()["type"] == "message"
    assert "X-RateLimit-Limit" not in answer.headers


def test_a_deduct_when_step_that_fails_afterwards_keeps_the_answer(fakes, caplog):
    with RedisServer() as redis:
        app, limiter = app_for(fakes, storage_uri=redis.url)

        @app.route("/render")
        @limiter.limit("5/minute", deduct_when=lambda response: True)
        def render():
            redis.proc.kill()
            redis.proc.wait()
            return "rendered"

        answer = app.test_client().get("/render")
    assert answer.status_code == 200
    assert answer.get_data() == b"rendered"
    assert len(backend_lines(caplog)) == 1


@pytest.mark.parametrize(
    "options, why",
    [
        ({"swallow_errors": True}, "on_backend_error='allow'"),
        ({"on_backend_error": "ignore"}, "on_backend_error must be"),
        ({"backend_timeout": 0}, "backend_timeout"),
    ],
)
def test_backend_options_are_checked_at_start_up(fakes, options, why):
    with pytest.raises(ValueError, match=why):
        app_for(fakes, **options)


def test_the_backend_timeout_reaches_the_redis_client(fakes):
    _, limiter = app_for(fakes, storage_uri="redis://127.0.0.1:1/0", backend_timeout=0.25)
    kwargs = limiter.storage.storage.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.25


@pytest.mark.parametrize(
    "uri, named",
    [
        ("redis://:pw@redis.internal:6379/0", "redis://redis.internal:6379/0"),
        ("rediss://user:pw@10.0.0.5:6380/2?ssl_cert_reqs=none", "rediss://10.0.0.5:6380/2"),
        ("redis://redis.internal:6379/0?password=pw", "redis://redis.internal:6379/0"),
        (
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster",
            "redis+sentinel://s1:26379,s2:26379/mymaster",
        ),
        ("redis+unix:///run/redis.sock?db=1&password=pw", "redis+unix:///run/redis.sock"),
        ("memory://", "memory://"),
    ],
)
def test_the_backend_is_named_without_credentials(uri, named):
    assert describe_backend(uri) == named


def test_the_outage_line_is_an_error_and_recovery_a_warning(fakes, caplog):
    caplog.set_level(logging.DEBUG)
    with RedisServer() as redis:
        client = app_for(fakes, storage_uri=redis.url)[0].test_client()
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            assert message(client).status_code == 503
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
        assert message(client).status_code == 200
    levels = [
        r.levelname for r in caplog.records if r.getMessage().startswith("rate limit backend")
    ]
    assert levels == ["ERROR", "WARNING"]
