"""Every row of a provider route's contract, through the Flask test client and the fakes."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import socket

import flask
import pytest
from live import Upstream, json_reply

from flask_fal_proxy.providers import (
    ANTHROPIC,
    ELEVENLABS,
    OPENAI,
    ProviderSpec,
    create_provider_blueprint,
)
from flask_fal_proxy.testing import loopback_session
from providers.provider_support import ANTHROPIC_KEY, ELEVENLABS_KEY, assert_no_key

MESSAGE = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}
SPEECH = {"text": "hello there", "model_id": "eleven_multilingual_v2"}
VERSION = {"anthropic-version": "2023-06-01"}


def post_message(client, path="v1/messages", body=None, headers=None, **kwargs):
    return client.post(
        f"/api/anthropic/{path}",
        data=json.dumps(body if body is not None else MESSAGE),
        headers={"Content-Type": "application/json", **VERSION, **(headers or {})},
        **kwargs,
    )


# -- configuration, refused at creation --------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"base_url": "http://api.example.com"}, "https"),
        ({"base_url": "https://API.example.com"}, "canonical"),
        ({"base_url": "https://user:pw@api.example.com"}, "credentials"),
        ({"base_url": "https://api.example.com/?q=1"}, "query"),
        ({"forward_request_headers": ("x-api-key",)}, "cannot include"),
        ({"forward_request_headers": ("Authorization",)}, "cannot include"),
        ({"forward_request_headers": ("cookie",)}, "cannot include"),
        ({"forward_request_headers": "anthropic-version"}, "single string"),
        ({"allowed_paths": ("!v1/messages",)}, "negation"),
        ({"allowed_methods": ("TRACE",)}, "TRACE"),
        ({"auth_header": "host"}, "auth_header"),
        ({"key_env": "not an identifier"}, "identifier"),
    ],
)
def test_a_bad_spec_is_a_value_error(kwargs, why):
    fields = {
        "name": "example",
        "base_url": "https://api.example.com",
        "auth_header": "x-api-key",
        "key_env": "EXAMPLE_API_KEY",
        **kwargs,
    }
    with pytest.raises(ValueError, match=why):
        ProviderSpec(**fields)


def test_the_built_in_specs_are_the_documented_ones():
    assert (ANTHROPIC.base_url, ANTHROPIC.auth_header, ANTHROPIC.key_env) == (
        "https://api.anthropic.com",
        "x-api-key",
        "ANTHROPIC_API_KEY",
    )
    assert ANTHROPIC.forward_request_headers == ("anthropic-version", "anthropic-beta")
    assert ELEVENLABS.allowed_paths == (
        "v1/text-to-speech/*",
        "v1/text-to-speech/*/stream",
        "v1/sound-generation",
    )
    assert (OPENAI.auth_header, OPENAI.key_prefix) == ("authorization", "Bearer ")
    assert ANTHROPIC.allowed_methods == ("POST",)


@pytest.mark.parametrize(
    "kwargs, why",
    [
        ({"allow_unauthorized_requests": False}, "is_authenticated"),
        ({"route": "api/anthropic"}, "route"),
        ({"route": "/api/anthropic/"}, "route"),
        ({"route": "/api/<name>"}, "variables"),
        ({"allowed_methods": ()}, "empty"),
        ({"allowed_paths": ("v1/{a",)}, "glob"),
        ({"max_request_body_bytes": 0}, "max_request_body_bytes"),
        ({"read_timeout": -1}, "read_timeout"),
        ({"api_key": "  "}, "api_key"),
    ],
)
def test_bad_blueprint_options_are_value_errors(kwargs, why):
    with pytest.raises(ValueError, match=why):
        create_provider_blueprint("anthropic", **kwargs)


def test_an_unknown_provider_name_is_a_value_error():
    with pytest.raises(ValueError, match="anthropic, elevenlabs, openai"):
        create_provider_blueprint("mistral")


# -- paths and methods, refused before anything is read ----------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/api/anthropic/v1/models"),
        ("POST", "/api/anthropic/v1/messages/batches"),
        ("POST", "/api/anthropic/v1/messagesX"),
        ("POST", "/api/elevenlabs/v1/voices/add"),
        ("POST", "/api/elevenlabs/v1/text-to-speech/voice/stream/with-timestamps"),
        ("POST", "/api/elevenlabs/v1/speech-to-text"),
    ],
)
def test_paths_outside_the_allow_list_are_403_before_the_body(provider_app, fakes, method, path):
    response = (
        provider_app()
        .test_client()
        .open(path, method=method, data=b"{not json", content_type="application/json")
    )
    assert response.status_code == 403
    assert response.get_json() == {
        "message": "This path is not allowed by the proxy.",
        "code": "path_not_allowed",
    }
    assert all(not fake.calls for fake in fakes)


@pytest.mark.parametrize(
    "path",
    [
        "v1/messages/",
        "v1//messages",
        "v1/./messages",
        "v1/x/../messages",
        "v1/%2e%2e/messages",
        "v1%2Fmessages",
        "v1%2fmessages",
        "v1%5Cmessages",
        "v1/messages%00",
        "v1/mess%61ges",
        "v1/messages%",
        "v1/caf%C3%A9;x",
        "v1/messages\\..",
    ],
)
def test_hostile_paths_are_400_and_never_sent(provider_app, fakes, path):
    response = (
        provider_app().test_client().post(f"/api/anthropic/{path}", json=MESSAGE, headers=VERSION)
    )
    assert (response.status_code, response.get_json()["code"]) == (400, "invalid_path"), path
    assert all(not fake.calls for fake in fakes)


@pytest.mark.parametrize(
    "path", ["v1/%2e%2e/v1/messages", "v1%2Fmessages", "v1/x/../messages", "v1//messages"]
)
def test_a_real_server_judges_the_request_line_as_sent(served, fakes, path):
    connection = http.client.HTTPConnection("127.0.0.1", served.server.server_port, timeout=5)
    try:
        connection.request(
            "POST",
            f"/api/anthropic/{path}",
            body=json.dumps(MESSAGE),
            headers={"Content-Type": "application/json", **VERSION},
        )
        response = connection.getresponse()
        status, body = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert (status, body["code"]) == (400, "invalid_path")
    assert all(not fake.calls for fake in fakes)


def test_an_encoded_slash_is_judged_as_sent_not_as_decoded(provider_app, fakes):
    # Flask routes v1%2Fmessages as v1/messages; the allow-list must not see that.
    response = (
        provider_app()
        .test_client()
        .post("/api/anthropic/v1%2Fmessages", json=MESSAGE, headers=VERSION)
    )
    assert response.status_code == 400
    assert response.get_json()["message"] == "Path rejected: encoded separator in the path."


def test_a_method_outside_allowed_methods_is_a_json_405(provider_app, fakes):
    response = provider_app().test_client().delete("/api/elevenlabs/v1/text-to-speech/voice")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST, OPTIONS"
    assert response.get_json()["code"] == "method_not_allowed"
    assert all(not fake.calls for fake in fakes)


def test_an_empty_allow_list_serves_nothing(fakes):
    anthropic, _ = fakes
    app = flask.Flask("empty")
    app.register_blueprint(
        create_provider_blueprint(
            "anthropic", api_key=ANTHROPIC_KEY, allowed_paths=(), session=anthropic.session()
        )
    )
    response = post_message(app.test_client())
    assert response.status_code == 403
    assert anthropic.calls == []


def test_widened_paths_and_methods_reach_the_provider(fakes):
    anthropic, _ = fakes
    app = flask.Flask("widened")
    app.register_blueprint(
        create_provider_blueprint(
            "anthropic",
            route="/llm",
            name="llm",
            api_key=ANTHROPIC_KEY,
            allowed_paths=("v1/messages", "v1/models/*"),
            allowed_methods=("GET", "POST"),
            session=anthropic.session(),
        )
    )
    client = app.test_client()
    assert post_message(client, "../../llm/v1/messages").status_code in (400, 404)
    assert client.post("/llm/v1/messages", json=MESSAGE, headers=VERSION).status_code == 200
    assert client.get("/llm/v1/models/claude", headers=VERSION).status_code == 405  # fake's own
    assert [c.path for c in anthropic.calls] == ["/v1/messages", "/v1/models/claude"]


# -- headers -----------------------------------------------------------------------------


def test_outbound_headers_are_an_allow_list_with_the_servers_key(provider_app, fakes):
    anthropic, _ = fakes
    response = post_message(
        provider_app().test_client(),
        headers={
            "anthropic-version": "2099-12-31",
            "anthropic-beta": "tools-2099",
            "anthropic-dangerous-direct-browser-access": "true",
            "x-api-key": "placeholder",
            "Authorization": "Bearer session-token",
            "xi-api-key": "browser-xi",
            "Cookie": "session=abc",
            "X-Stainless-Lang": "js",
            "X-Forwarded-For": "10.0.0.1",
            "Accept": "application/json",
            "User-Agent": "Anthropic/JS 0.0",
            "Connection": "keep-alive, anthropic-beta",
            "Proxy-Authorization": "Basic eA==",
        },
    )
    assert response.status_code == 200
    (call,) = anthropic.calls
    seen = {k.lower(): v for k, v in call.headers.items()}
    assert seen["x-api-key"] == ANTHROPIC_KEY
    assert seen["anthropic-version"] == "2099-12-31"  # whatever the client sent
    assert seen["host"] == "api.anthropic.com"
    assert seen["accept"] == "application/json"
    assert seen["user-agent"] == "Anthropic/JS 0.0"
    assert set(seen) <= {
        "host",
        "x-api-key",
        "anthropic-version",
        "content-type",
        "content-length",
        "accept",
        "user-agent",
        "accept-encoding",
    }, seen
    assert "accept-encoding" not in seen or seen["accept-encoding"] == "identity"
    assert_no_key(response)


def test_the_specs_own_headers_travel_as_sent(provider_app, fakes):
    anthropic, _ = fakes
    post_message(
        provider_app().test_client(),
        headers={"anthropic-beta": "a-2099-01-01", "anthropic-version": "2024-02-29"},
    )
    (call,) = anthropic.calls
    assert call.headers["Anthropic-Beta"] == "a-2099-01-01"
    assert call.headers["Anthropic-Version"] == "2024-02-29"


def test_the_elevenlabs_key_header_is_set_once(provider_app, fakes):
    _, elevenlabs = fakes
    response = (
        provider_app()
        .test_client()
        .post(
            "/api/elevenlabs/v1/text-to-speech/voice-1",
            json=SPEECH,
            headers={"xi-api-key": "browser-key", "Accept": "audio/mpeg"},
        )
    )
    assert response.status_code == 200
    (call,) = elevenlabs.calls
    assert [v for k, v in call.headers.items() if k.lower() == "xi-api-key"] == [ELEVENLABS_KEY]
    assert call.headers["Accept"] == "audio/mpeg"
    assert "x-api-key" not in {k.lower() for k in call.headers}


def test_openai_gets_a_bearer_key(fakes):
    anthropic, _ = fakes  # any loopback server will do: only the request is read
    app = flask.Flask("openai")
    app.config["OPENAI_API_KEY"] = "sk-openai-test"
    app.register_blueprint(create_provider_blueprint("openai", session=anthropic.session()))
    app.test_client().post(
        "/api/openai/v1/chat/completions",
        json={"model": "x"},
        headers={"Authorization": "Bearer browser"},
    )
    (call,) = anthropic.calls
    assert call.host == "api.openai.com"
    assert call.headers["Authorization"] == "Bearer sk-openai-test"


def test_the_query_string_is_relayed_unchanged(provider_app, fakes):
    _, elevenlabs = fakes
    query = "output_format=mp3_44100_128&enable_logging=false&optimize_streaming_latency=2"
    response = (
        provider_app()
        .test_client()
        .post(f"/api/elevenlabs/v1/text-to-speech/voice-1/stream?{query}", json=SPEECH)
    )
    assert response.status_code == 200
    assert elevenlabs.calls[0].query == query
    assert elevenlabs.calls[0].path == "/v1/text-to-speech/voice-1/stream"


def test_a_query_requests_would_rewrite_is_refused(provider_app, fakes):
    response = (
        provider_app().test_client().post("/api/elevenlabs/v1/sound-generation?a=%zz", json=SPEECH)
    )
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_path"
    assert fakes[1].calls == []


# -- bodies ------------------------------------------------------------------------------


def test_json_bodies_go_byte_for_byte(provider_app, fakes):
    anthropic, _ = fakes
    body = (
        b'{ "model":"claude-test" ,"max_tokens":8,\n'
        b'"messages":[{"role":"user","content":"caf\\u00e9"}]}'
    )
    response = (
        provider_app()
        .test_client()
        .post(
            "/api/anthropic/v1/messages",
            data=body,
            headers={"Content-Type": "application/json", **VERSION},
        )
    )
    assert response.status_code == 200
    assert anthropic.calls[0].body == body


@pytest.mark.parametrize(
    "body, code",
    [(b"{", "invalid_json"), (b'{"a": NaN}', "invalid_json"), (b"\xff\xfe", "invalid_json")],
)
def test_malformed_json_is_400(provider_app, fakes, body, code):
    response = (
        provider_app()
        .test_client()
        .post("/api/anthropic/v1/messages", data=body, headers={"Content-Type": "application/json"})
    )
    assert (response.status_code, response.get_json()["code"]) == (400, code)
    assert fakes[0].calls == []


def test_the_size_cap_applies(provider_app, fakes):
    client = provider_app(max_request_body_bytes=100).test_client()
    response = post_message(client, body={**MESSAGE, "pad": "x" * 200})
    assert (response.status_code, response.get_json()["code"]) == (413, "payload_too_large")
    assert fakes[0].calls == []


def test_other_media_types_are_415(provider_app, fakes):
    response = (
        provider_app()
        .test_client()
        .post("/api/anthropic/v1/messages", data="hello", content_type="text/plain")
    )
    assert (response.status_code, response.get_json()["code"]) == (415, "unsupported_media_type")


@pytest.mark.parametrize("content_type", ["multipart/form-data; boundary=XyZ", "audio/mpeg"])
def test_uploads_pass_through_byte_for_byte_on_allowed_paths(fakes, content_type):
    _, elevenlabs = fakes
    app = flask.Flask("stt")
    app.register_blueprint(
        create_provider_blueprint(
            "elevenlabs",
            api_key=ELEVENLABS_KEY,
            allowed_paths=("v1/speech-to-text",),
            session=elevenlabs.session(),
        )
    )
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
        b"Content-Type: audio/mpeg\r\n\r\n\x00\xff\xfe binary \r\n--XyZ--\r\n"
    )
    app.test_client().post(
        "/api/elevenlabs/v1/speech-to-text", data=body, headers={"Content-Type": content_type}
    )
    (call,) = elevenlabs.calls
    assert call.body == body
    assert call.headers["Content-Type"] == content_type


# -- authentication and keys -------------------------------------------------------------


def test_the_authentication_hook_runs_after_the_path_checks(provider_app, fakes):
    asked = []

    def is_authenticated(request: flask.Request) -> bool:
        asked.append(request.path)
        return request.headers.get("X-Session") == "ok"

    client = provider_app(
        allow_unauthorized_requests=False, is_authenticated=is_authenticated
    ).test_client()
    assert post_message(client, "v1/models").status_code == 403
    assert asked == []
    refused = post_message(client)
    assert refused.status_code == 401
    assert refused.get_json() == {
        "message": "Authentication is required to use the anthropic proxy.",
        "code": "unauthorized",
    }
    assert fakes[0].calls == []
    assert post_message(client, headers={"X-Session": "ok"}).status_code == 200


def test_no_key_is_a_500_and_a_log_line(fakes, caplog):
    app = flask.Flask("no-key")
    app.register_blueprint(create_provider_blueprint("anthropic", session=fakes[0].session()))
    response = post_message(app.test_client(), headers={"x-api-key": "browser-key"})
    assert response.status_code == 500
    assert response.get_json() == {
        "message": "The anthropic proxy has no anthropic credentials configured.",
        "code": "missing_credentials",
    }
    assert fakes[0].calls == []
    assert any(
        r.levelno == logging.ERROR and "ANTHROPIC_API_KEY" in r.getMessage() for r in caplog.records
    )


def test_the_key_comes_from_api_key_then_config_then_environment(fakes, monkeypatch):
    anthropic, _ = fakes
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")

    def sent_key(**options) -> str:
        anthropic.calls.clear()
        app = flask.Flask("keys")
        if options.pop("config", False):
            app.config["ANTHROPIC_API_KEY"] = "from-config\n"
        app.register_blueprint(
            create_provider_blueprint("anthropic", session=anthropic.session(), **options)
        )
        post_message(app.test_client())
        return anthropic.calls[0].headers["X-Api-Key"]

    assert sent_key(api_key="from-argument", config=True) == "from-argument"
    assert sent_key(config=True) == "from-config"
    assert sent_key() == "from-env"


def test_a_key_that_is_no_header_value_is_refused_without_echo(fakes, caplog):
    app = flask.Flask("bad-key")
    app.config["ANTHROPIC_API_KEY"] = "sk-ant-half\nInjected: yes"
    app.register_blueprint(create_provider_blueprint("anthropic", session=fakes[0].session()))
    response = post_message(app.test_client())
    assert (response.status_code, response.get_json()["code"]) == (500, "invalid_credentials")
    assert b"sk-ant-half" not in response.get_data()
    assert all("sk-ant-half" not in r.getMessage() for r in caplog.records)
    assert fakes[0].calls == []


# -- the answer --------------------------------------------------------------------------


def test_provider_errors_are_relayed_as_they_are(provider_app, fakes):
    client = provider_app().test_client()
    limited = post_message(client, body={**MESSAGE, "model": "rate-limited"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.get_json()["error"]["type"] == "rate_limit_error"
    overloaded = post_message(client, body={**MESSAGE, "model": "overloaded"})
    assert overloaded.status_code == 529
    assert overloaded.get_json()["error"]["type"] == "overloaded_error"
    missing = client.post("/api/elevenlabs/v1/text-to-speech/missing-voice", json=SPEECH)
    assert missing.status_code == 404
    assert missing.get_json()["detail"]["status"] == "voice_not_found"


def test_a_wrong_server_key_is_the_providers_401_without_the_key(fakes):
    anthropic, _ = fakes
    app = flask.Flask("wrong-key")
    app.register_blueprint(
        create_provider_blueprint("anthropic", api_key="sk-ant-wrong", session=anthropic.session())
    )
    response = post_message(app.test_client())
    assert response.status_code == 401
    assert response.get_json()["error"]["type"] == "authentication_error"
    assert b"sk-ant-wrong" not in response.get_data()


def test_audio_is_relayed_identical_and_uncached(provider_app, fakes):
    _, elevenlabs = fakes
    response = (
        provider_app().test_client().post("/api/elevenlabs/v1/text-to-speech/voice-1", json=SPEECH)
    )
    assert response.status_code == 200
    assert response.mimetype == "audio/wav"
    assert response.get_data() == elevenlabs.sent[-1]
    assert response.get_data()[:4] == b"RIFF"
    assert "Content-Length" not in response.headers  # streamed, not buffered
    assert_no_key(response)


def test_an_unreachable_provider_is_502(fakes):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    app = flask.Flask("unreachable")
    app.register_blueprint(
        create_provider_blueprint(
            "anthropic", api_key=ANTHROPIC_KEY, session=loopback_session(port)
        )
    )
    response = post_message(app.test_client())
    assert response.status_code == 502
    assert response.get_json() == {
        "message": "anthropic could not be reached.",
        "code": "upstream_unreachable",
    }


def test_a_silent_provider_is_504():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        app = flask.Flask("silent")
        app.register_blueprint(
            create_provider_blueprint(
                "elevenlabs",
                api_key=ELEVENLABS_KEY,
                read_timeout=0.3,
                session=loopback_session(silent.getsockname()[1]),
            )
        )
        response = app.test_client().post("/api/elevenlabs/v1/sound-generation", json=SPEECH)
    finally:
        silent.close()
    assert response.status_code == 504
    assert response.get_json()["code"] == "upstream_timeout"
    assert response.get_json()["message"] == "elevenlabs did not answer in time."


def test_a_compressed_answer_is_relayed_as_received():
    # Never decoded, so its Content-Encoding still holds and nothing is buffered.
    packed = gzip.compress(b'{"type":"message","content":[]}' * 50)
    reply = json_reply(200, packed, [("Content-Encoding", "gzip"), ("Set-Cookie", "a=b")])
    with Upstream(reply) as upstream:
        app = flask.Flask("gzip")
        app.register_blueprint(
            create_provider_blueprint(
                "anthropic", api_key=ANTHROPIC_KEY, session=upstream.session()
            )
        )
        response = post_message(app.test_client(), headers={"Accept-Encoding": "gzip"})
    assert response.get_data() == packed
    assert response.headers["Content-Encoding"] == "gzip"
    assert "Content-Length" not in response.headers
    assert "Set-Cookie" not in response.headers
    (seen,) = upstream.requests
    assert seen.header("Accept-Encoding") in (None, "identity")
    assert seen.target == "/v1/messages"


def test_without_a_raw_uri_the_reencoded_path_is_judged():
    from werkzeug.test import EnvironBuilder

    from flask_fal_proxy.errors import ProxyError
    from flask_fal_proxy.providers.outbound import requested_path

    def judged(path_info: str) -> str:
        environ = EnvironBuilder(path="/").get_environ()
        for name in ("RAW_URI", "REQUEST_URI"):
            environ.pop(name, None)
        environ["PATH_INFO"] = path_info
        return requested_path(flask.Request(environ), "/api/anthropic")

    assert judged("/api/anthropic/v1/messages") == "v1/messages"
    assert judged("/api/anthropic/v1/a b") == "v1/a%20b"
    with pytest.raises(ProxyError, match="dot segments"):
        judged("/api/anthropic/v1/../messages")
    with pytest.raises(ProxyError, match="routed"):
        judged("/elsewhere/v1/messages")
