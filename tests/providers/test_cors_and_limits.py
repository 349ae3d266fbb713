"""CORS (Flask-CORS) and rate limits (Flask-Limiter) on the three proxy routes.

The recipe in docs/PROVIDERS.md is this app: the fal route and the two
provider routes, pages on one origin allowed, a budget per client and per
route, the preflight free, 429s in JSON with ``Retry-After``, and counters
in Redis shared by two app instances.
"""

from __future__ import annotations

import json
import secrets

import flask
import pytest

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.cross_origin import allow_browser_origins
from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.rate_limits import limit_proxy_routes
from providers.provider_support import ANTHROPIC_KEY, ELEVENLABS_KEY

PAGE = "https://editor.example.com"
ROUTES = ("/api/fal/proxy", "/api/anthropic", "/api/elevenlabs")
MESSAGE = {"model": "claude-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
SDK_PREFLIGHT_HEADERS = (
    "accept,anthropic-dangerous-direct-browser-access,anthropic-version,content-type,"
    "x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,"
    "x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout"
)


def studio(fakes, limits=None, storage_uri="memory://", key_prefix=""):
    anthropic, elevenlabs = fakes
    app = flask.Flask("studio")
    app.config.update(ANTHROPIC_API_KEY=ANTHROPIC_KEY, ELEVENLABS_API_KEY=ELEVENLABS_KEY)
    app.config["FAL_KEY"] = "fal-test-key"
    app.register_blueprint(create_blueprint(session=anthropic.session()))
    app.register_blueprint(create_provider_blueprint("anthropic", session=anthropic.session()))
    app.register_blueprint(create_provider_blueprint("elevenlabs", session=elevenlabs.session()))
    allow_browser_origins(app, [PAGE], ROUTES)
    limit_proxy_routes(
        app,
        limits or {"anthropic_proxy": "2/minute", "elevenlabs_proxy": "3/minute"},
        storage_uri=storage_uri,
        key_prefix=key_prefix,
    )
    return app


def message(client, origin=PAGE, **environ):
    return client.post(
        "/api/anthropic/v1/messages",
        data=json.dumps(MESSAGE),
        headers={
            "Origin": origin,
            "Content-Type": "application/json",
            "anthropic-version": "2023-06-01",
        },
        environ_base=environ,
    )


def preflight(
    client, path="/api/anthropic/v1/messages", origin=PAGE, headers=SDK_PREFLIGHT_HEADERS
):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )


def test_the_sdk_preflight_is_allowed_for_the_configured_origin(fakes):
    response = preflight(studio(fakes).test_client())
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert allowed == set(SDK_PREFLIGHT_HEADERS.split(","))
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert all(not fake.calls for fake in fakes)


def test_the_fal_client_headers_are_allowed(fakes):
    response = preflight(
        studio(fakes).test_client(),
        path="/api/fal/proxy",
        headers="content-type,x-fal-target-url,x-fal-queue-priority",
    )
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "x-fal-target-url" in allowed and "x-fal-queue-priority" in allowed


def test_other_origins_get_no_cors_headers(fakes):
    client = studio(fakes).test_client()
    for origin in ("https://evil.example", "null", "https://editor.example.com.evil.example"):
        response = preflight(client, origin=origin)
        assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in preflight(client, path="/elsewhere").headers


def test_an_answer_carries_cors_and_exposes_request_ids(fakes):
    response = message(studio(fakes).test_client())
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    exposed = response.headers["Access-Control-Expose-Headers"].lower()
    assert "request-id" in exposed and "retry-after" in exposed


def test_the_limit_is_a_json_429_with_retry_after_and_preflights_are_free(fakes):
    client = studio(fakes).test_client()
    for _ in range(5):
        assert preflight(client).status_code == 200
    assert [message(client).status_code for _ in range(2)] == [200, 200]
    refused = message(client)
    assert refused.status_code == 429
    assert refused.get_json() == {
        "message": "Too many requests to the proxy; try again after Retry-After.",
        "code": "rate_limited",
    }
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # The page can read the refusal and when to retry.
    assert refused.headers["Access-Control-Allow-Origin"] == PAGE
    assert len(fakes[0].calls) == 2
    assert preflight(client).status_code == 200


def test_limits_are_per_route_and_per_client(fakes):
    client = studio(fakes).test_client()
    assert [message(client).status_code for _ in range(3)] == [200, 200, 429]
    speech = client.post("/api/elevenlabs/v1/sound-generation", json={"text": "rain"})
    assert speech.status_code == 200
    other = message(client, REMOTE_ADDR="10.0.0.2")
    assert other.status_code == 200


def test_the_fal_route_can_be_limited_too(fakes):
    client = studio(fakes, limits={"fal_proxy": "1/minute"}).test_client()
    target = {"x-fal-target-url": "https://fal.run/fal-ai/flux/dev", "Origin": PAGE}
    assert client.post("/api/fal/proxy", json={}, headers=target).status_code != 429
    refused = client.post("/api/fal/proxy", json={}, headers=target)
    assert refused.status_code == 429
    assert refused.get_json()["code"] == "rate_limited"


@pytest.mark.parametrize(
    "call, why",
    [
        (lambda app: limit_proxy_routes(app, {"nope": "1/minute"}), "no registered blueprint"),
        (lambda app: limit_proxy_routes(app, {"anthropic_proxy": "often"}), "often"),
        (lambda app: limit_proxy_routes(app, {}), "empty"),
        (lambda app: allow_browser_origins(app, ["*"], ROUTES), "cannot include"),
        (lambda app: allow_browser_origins(app, ["null"], ROUTES), "cannot include"),
        (lambda app: allow_browser_origins(app, [], ROUTES), "empty"),
        (lambda app: allow_browser_origins(app, [PAGE], ["/api/anthropic/"]), "route"),
    ],
)
def test_bad_recipes_fail_at_start_up(fakes, call, why):
    app = flask.Flask("bad")
    app.register_blueprint(create_provider_blueprint("anthropic", session=fakes[0].session()))
    with pytest.raises(ValueError, match=why):
        call(app)


def test_two_instances_on_one_redis_respect_one_limit(fakes, redis_url):
    prefix = f"test-{secrets.token_hex(4)}"
    limits = {"anthropic_proxy": "3/minute"}
    first = studio(fakes, limits, storage_uri=redis_url, key_prefix=prefix).test_client()
    second = studio(fakes, limits, storage_uri=redis_url, key_prefix=prefix).test_client()
    statuses = [message(client).status_code for client in (first, second, first, second, first)]
    assert statuses == [200, 200, 200, 429, 429]
    assert len(fakes[0].calls) == 3
    # With per-process memory, the same two instances would each allow 3.
    alone = [studio(fakes, limits).test_client() for _ in range(2)]
    assert [message(c).status_code for c in alone for _ in range(3)] == [200] * 6
