"""What goes back to the browser of an upstream's answer headers: the allow-list in relay.py.

An organisation id tells every visitor whose key pays, a banner which
software runs behind the proxy, and a provider's own CORS, HSTS or
error-reporting headers would apply to the deployer's origin. What clients
read (request ids, retry hints, rate-limit budgets, content headers,
``x-fal-*``, ElevenLabs' cost headers) still arrives.
"""

from __future__ import annotations

import json

import responses

from flask_fal_proxy.relay import Relay, default_session

OPENAI_URL = "https://api.openai.com/v1/audio/speech"
MESSAGE = {"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}

KEPT = {
    "content-type": "audio/mpeg",
    "content-disposition": 'attachment; filename="speech.mp3"',
    "cache-control": "no-store",
    "etag": '"abc"',
    "last-modified": "Wed, 02 Dec 2026 10:00:00 GMT",
    "x-request-id": "req_openai_1",
    "request-id": "req_1",
    "openai-processing-ms": "412",
    "openai-version": "2020-10-01",
    "retry-after": "7",
    "retry-after-ms": "6500",
    "x-should-retry": "false",
    "x-ratelimit-remaining-requests": "99",
    "x-ratelimit-reset-tokens": "6ms",
    "anthropic-ratelimit-tokens-remaining": "7000",
    "x-fal-request-id": "fal-1",
    "history-item-id": "hist_1",
    "character-cost": "12",
    "x-character-count": "12",
    "current-concurrent-requests": "1",
}
DROPPED = {
    "openai-organization": "org-secret-owner",
    "openai-project": "proj_secret",
    "anthropic-organization-id": "0b7f-secret-org",
    "server": "cloudflare",
    "x-powered-by": "Express",
    "via": "1.1 google",
    "cf-ray": "8c1d2e3f4a5b6c7d-AMS",
    "x-envoy-upstream-service-time": "410",
    "access-control-allow-origin": "*",
    "strict-transport-security": "max-age=31536000; includeSubDomains; preload",
    "alt-svc": 'h3=":443"; ma=86400',
    "nel": '{"report_to":"cf-nel","max_age":604800}',
    "report-to": '{"endpoints":[{"url":"https://a.nel.cloudflare.com/report"}]}',
    "set-cookie": "__cf_bm=secret; path=/",
}


@responses.activate
def test_only_the_headers_clients_use_are_relayed():
    responses.post(OPENAI_URL, body=b"ID3", headers={**KEPT, **DROPPED})
    relay = Relay(default_session(), connect_timeout=3, read_timeout=7, upstream="openai")
    answer = relay.forward("POST", OPENAI_URL, {"authorization": "Bearer sk-unit"}, b"{}")
    relayed = {name.lower(): value for name, value in answer.headers.items()}
    assert {name: relayed.get(name) for name in KEPT} == KEPT
    assert not set(DROPPED) & set(relayed), set(DROPPED) & set(relayed)
    assert "secret" not in json.dumps(relayed)


def test_the_anthropic_organization_stays_on_the_server(provider_app, fakes):
    anthropic = fakes[0]
    client = provider_app().test_client()
    for model in ("claude-test", "claude-rate-limited"):
        answer = client.post(
            "/api/anthropic/v1/messages",
            json={**MESSAGE, "model": model},
            headers={"anthropic-version": "2023-06-01"},
        )
        assert answer.status_code in (200, 429)
        assert answer.headers["request-id"].startswith("req_")
        assert answer.headers["anthropic-ratelimit-requests-remaining"] == "49"
        assert "anthropic-organization-id" not in answer.headers
        assert anthropic.organization_id not in str(answer.headers)
        for edge in ("via", "cf-ray", "server"):
            assert edge not in answer.headers
    assert answer.status_code == 429 and answer.headers["retry-after"] == "7"


def test_elevenlabs_request_ids_are_relayed(provider_app, fakes):
    answer = (
        provider_app()
        .test_client()
        .post("/api/elevenlabs/v1/sound-generation", json={"text": "rain"})
    )
    assert answer.status_code == 200
    assert len(answer.headers["request-id"]) == 20
