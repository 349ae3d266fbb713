"""Every row of the route's HTTP contract, against the fake fal on 127.0.0.1."""

from __future__ import annotations

import io
import logging
import socket
import time

import pytest
from conftest import PROXY, TEST_KEY, target
from live import Upstream

QUEUE = "https://queue.fal.run/fal-ai/flux/dev"
RUN = "https://fal.run/fal-ai/flux/dev"


def assert_proxy_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert TEST_KEY not in response.get_data(as_text=True)


@pytest.mark.parametrize("method", ["PATCH", "TRACE", "PROPFIND", "FOO"])
def test_other_methods_get_405_json_with_allow(client, fake, method):
    response = client.open(PROXY, method=method, headers=target(RUN))
    assert_proxy_error(response, 405, "method_not_allowed")
    allow = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= allow
    assert fake.calls == []


def test_405_handling_leaves_other_routes_alone(make_app):
    app = make_app()

    @app.get("/elsewhere")
    def elsewhere():
        return "ok"

    response = app.test_client().post("/elsewhere")
    assert response.status_code == 405
    assert response.mimetype != "application/json"


def test_options_is_answered_by_flask_without_calling_fal(client, fake):
    response = client.options(PROXY, headers=target(RUN))
    assert response.status_code == 200
    assert fake.calls == []


def test_head_is_forwarded_without_a_body(client, fake):
    response = client.head(
        PROXY, headers=target("https://queue.fal.run/fal-ai/flux/requests/x/status")
    )
    assert response.status_code == 404  # the fake does not know request "x"
    assert response.data == b""
    assert [c.method for c in fake.calls] == ["HEAD"]


@pytest.mark.parametrize("headers", [{}, {"x-fal-target-url": ""}])
def test_missing_target_url_is_400(client, fake, headers):
    assert_proxy_error(client.post(PROXY, headers=headers, json={}), 400, "missing_target_url")
    assert fake.calls == []


def test_duplicate_target_urls_are_refused(client, fake):
    headers = [("x-fal-target-url", RUN), ("x-fal-target-url", "https://evil.example/")]
    assert_proxy_error(client.post(PROXY, headers=headers, json={}), 412, "invalid_target_url")
    assert fake.calls == []


def test_url_outside_custom_patterns_is_412(make_app, fake):
    client = make_app(allowed_url_patterns=["queue.fal.run/**"]).test_client()
    assert_proxy_error(client.post(PROXY, headers=target(RUN), json={}), 412, "invalid_target_url")
    assert client.post(PROXY, headers=target(QUEUE), json={}).status_code == 200


def test_patterns_never_widen_beyond_fal_hosts(make_app, fake):
    client = make_app(allowed_url_patterns=["**"]).test_client()
    response = client.post(PROXY, headers=target("https://example.com/x"), json={})
    assert_proxy_error(response, 412, "invalid_target_url")
    assert fake.calls == []


class TestAllowedEndpoints:
    @pytest.fixture
    def client(self, make_app):
        return make_app(allowed_endpoints=["fal-ai/flux/dev/**", "fal-ai/fast-*"]).test_client()

    @pytest.mark.parametrize(
        "url",
        [
            "https://queue.fal.run/fal-ai/flux/pro",
            "https://fal.run/fal-ai/flux/schnell",
            "https://fal.run/fal-ai/lora",
            "https://fal.run/evil/fal-ai/flux/dev",
        ],
    )
    def test_post_outside_the_list_is_403(self, client, fake, url):
        assert_proxy_error(
            client.post(PROXY, headers=target(url), json={}), 403, "endpoint_not_allowed"
        )
        assert fake.calls == []

    @pytest.mark.parametrize(
        "url",
        [
            "https://queue.fal.run/fal-ai/flux/dev",
            "https://fal.run/fal-ai/flux/dev",
            "https://fal.run/fal-ai/flux/dev/stream",
            "https://fal.run/fal-ai/fast-sdxl",
        ],
    )
    def test_post_inside_the_list_is_forwarded(self, client, fake, url):
        assert client.post(PROXY, headers=target(url), json={"prompt": "p"}).status_code == 200
        assert len(fake.calls) == 1

    def test_model_runs_by_get_on_fal_run_are_checked_too(self, client, fake):
        response = client.get(PROXY, headers=target("https://fal.run/fal-ai/lora?prompt=x"))
        assert_proxy_error(response, 403, "endpoint_not_allowed")
        assert fake.calls == []

    def test_queue_status_result_and_cancel_are_not_model_calls(self, client, fake):
        submitted = client.post(PROXY, headers=target(QUEUE), json={"prompt": "p"}).get_json()
        base = f"https://queue.fal.run/fal-ai/flux/requests/{submitted['request_id']}"
        assert client.get(PROXY, headers=target(f"{base}/status?logs=1")).status_code == 200
        assert client.put(PROXY, headers=target(f"{base}/cancel")).status_code == 202
        assert client.get(PROXY, headers=target(base)).status_code == 200

    def test_storage_upload_is_not_a_model_call(self, client, fake):
        url = "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3"
        response = client.post(
            PROXY, headers=target(url), json={"content_type": "image/png", "file_name": "a.png"}
        )
        assert response.status_code == 200
        assert response.get_json()["upload_url"]


class TestAuthentication:
    def test_unauthenticated_is_401_when_required(self, make_app, fake):
        client = make_app(allow_unauthorized_requests=False).test_client()
        assert_proxy_error(client.post(PROXY, headers=target(RUN), json={}), 401, "unauthorized")
        assert fake.calls == []

    def test_default_check_is_an_authorization_header(self, make_app, fake):
        client = make_app(allow_unauthorized_requests=False).test_client()
        headers = {**target(RUN), "Authorization": "Bearer app-session"}
        assert client.post(PROXY, headers=headers, json={}).status_code == 200
        assert fake.calls[0].headers["Authorization"] == f"Key {TEST_KEY}"

    def test_custom_check_gets_the_flask_request(self, make_app, fake):
        seen = []

        def is_authenticated(request):
            seen.append(request.headers.get("X-App-User"))
            return request.headers.get("X-App-User") == "alice"

        client = make_app(
            allow_unauthorized_requests=False, is_authenticated=is_authenticated
        ).test_client()
        assert (
            client.post(
                PROXY, headers={**target(RUN), "X-App-User": "mallory"}, json={}
            ).status_code
            == 401
        )
        assert (
            client.post(PROXY, headers={**target(RUN), "X-App-User": "alice"}, json={}).status_code
            == 200
        )
        assert seen == ["mallory", "alice"]

    def test_unauthenticated_is_allowed_by_default(self, client, fake):
        assert client.post(PROXY, headers=target(RUN), json={}).status_code == 200


class TestBody:
    @pytest.mark.parametrize(
        "content_type",
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""],
    )
    def test_non_json_body_is_415(self, client, fake, content_type):
        response = client.post(
            PROXY, headers={**target(RUN), "Content-Type": content_type}, data=b'{"a":1}'
        )
        assert_proxy_error(response, 415, "unsupported_media_type")
        assert fake.calls == []

    def test_json_with_charset_is_accepted(self, client, fake):
        headers = {**target(RUN), "Content-Type": "application/json; charset=utf-8"}
        assert client.post(PROXY, headers=headers, data=b'{"a":1}').status_code == 200
        assert fake.calls[0].body == b'{"a":1}'

    def test_bodyless_post_needs_no_content_type(self, client, fake):
        assert client.post(PROXY, headers=target(QUEUE)).status_code == 200
        assert fake.calls[0].body == b""

    @pytest.mark.parametrize("body", [b"{", b"not json", b'{"a":1}garbage', b"\xff\xfe"])
    def test_malformed_json_is_400(self, client, fake, body):
        response = client.post(
            PROXY, headers={**target(RUN), "Content-Type": "application/json"}, data=body
        )
        assert_proxy_error(response, 400, "invalid_json")
        assert fake.calls == []

    def test_declared_size_over_the_limit_is_413_before_reading(self, make_app, fake):
        client = make_app(max_request_body_bytes=1000).test_client()
        stream = io.BytesIO(b"{" + b" " * 5000 + b"}")
        response = client.post(
            PROXY,
            headers={**target(RUN), "Content-Type": "application/json"},
            input_stream=stream,
            content_length=5002,
        )
        assert_proxy_error(response, 413, "payload_too_large")
        assert stream.tell() == 0
        assert fake.calls == []

    def test_undeclared_size_over_the_limit_is_413_after_at_most_the_limit(self, make_app, fake):
        client = make_app(max_request_body_bytes=100_000).test_client()
        stream = io.BytesIO(b'{"a":"' + b"x" * 10_000_000 + b'"}')
        response = client.post(
            PROXY,
            headers={
                **target(RUN),
                "Content-Type": "application/json",
                "Transfer-Encoding": "chunked",
            },
            environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
        )
        assert_proxy_error(response, 413, "payload_too_large")
        assert stream.tell() <= 100_001
        assert fake.calls == []

    def test_body_at_the_limit_is_forwarded_unchanged(self, make_app, fake):
        client = make_app(max_request_body_bytes=1000).test_client()
        body = b'{"a":"' + b"y" * 990 + b'"}'
        assert len(body) == 998
        headers = {**target(RUN), "Content-Type": "application/json"}
        assert client.post(PROXY, headers=headers, data=body).status_code == 200
        assert fake.calls[0].body == body

    def test_body_shorter_than_declared_is_400(self, client, fake):
        response = client.post(
            PROXY,
            headers={**target(RUN), "Content-Type": "application/json"},
            input_stream=io.BytesIO(b'{"a":1}'),
            environ_overrides={"CONTENT_LENGTH": "50"},
        )
        assert response.status_code == 400
        assert response.get_json()["code"] in ("incomplete_body", "invalid_json")
        assert fake.calls == []

    def test_get_body_is_not_read_or_forwarded(self, client, fake):
        headers = {
            **target("https://queue.fal.run/fal-ai/flux/requests/x/status"),
            "Content-Type": "text/plain",
        }
        client.get(PROXY, headers=headers, data=b"ignored")
        assert fake.calls[0].body == b""


class TestCredentials:
    def test_no_key_is_500_with_a_clear_log_line(self, make_app, fake, caplog):
        client = make_app(fal_key=None).test_client()
        assert_proxy_error(
            client.post(PROXY, headers=target(RUN), json={}), 500, "missing_credentials"
        )
        assert any(
            r.levelno == logging.ERROR and "FAL_KEY" in r.getMessage() for r in caplog.records
        )
        assert fake.calls == []

    def test_key_from_the_environment(self, make_app, fake, monkeypatch):
        monkeypatch.setenv("FAL_KEY", TEST_KEY)
        assert (
            make_app(fal_key=None)
            .test_client()
            .post(PROXY, headers=target(RUN), json={})
            .status_code
            == 200
        )

    def test_app_config_wins_over_the_environment(self, make_app, fake, monkeypatch):
        monkeypatch.setenv("FAL_KEY", "wrong-key")
        assert make_app().test_client().post(PROXY, headers=target(RUN), json={}).status_code == 200

    def test_key_id_and_secret_pair(self, make_app, fake, monkeypatch):
        key_id, secret = TEST_KEY.split("-", 1)
        monkeypatch.setenv("FAL_KEY_ID", key_id)
        monkeypatch.setenv("FAL_KEY_SECRET", secret)
        make_app(fal_key=None).test_client().post(PROXY, headers=target(RUN), json={})
        assert fake.calls[0].headers["Authorization"] == f"Key {key_id}:{secret}"

    def test_custom_resolver_sets_the_whole_header(self, make_app, fake):
        client = make_app(resolve_fal_auth=lambda request: f"Key {TEST_KEY}").test_client()
        assert client.post(PROXY, headers=target(RUN), json={}).status_code == 200
        client = make_app(resolve_fal_auth=lambda request: None).test_client()
        assert_proxy_error(
            client.post(PROXY, headers=target(RUN), json={}), 500, "missing_credentials"
        )

    def test_browser_authorization_is_never_used_as_the_fal_key(self, make_app, fake):
        client = make_app(fal_key=None).test_client()
        headers = {**target(RUN), "Authorization": f"Key {TEST_KEY}"}
        assert_proxy_error(client.post(PROXY, headers=headers, json={}), 500, "missing_credentials")
        assert fake.calls == []


class TestUpstreamFailures:
    def test_unreachable_is_502(self, make_app):
        from flask_fal_proxy.relay import default_session
        from flask_fal_proxy.testing import LoopbackAdapter

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]
        session = default_session()
        session.mount("https://", LoopbackAdapter(closed_port))
        client = make_app(session=session).test_client()
        assert_proxy_error(
            client.post(PROXY, headers=target(RUN), json={}), 502, "upstream_unreachable"
        )

    def test_silent_upstream_is_504_after_read_timeout(self, make_app):
        def silent(request, sock):
            time.sleep(2)

        with Upstream(silent) as upstream:
            client = make_app(session=upstream.session(), read_timeout=0.3).test_client()
            started = time.monotonic()
            response = client.post(PROXY, headers=target(RUN), json={})
            elapsed = time.monotonic() - started
        assert_proxy_error(response, 504, "upstream_timeout")
        assert elapsed < 1.5

    @pytest.mark.parametrize(
        "endpoint, status", [("fal-ai/validation-error", 422), ("fal-ai/server-error", 500)]
    )
    def test_upstream_errors_are_relayed_as_they_are(self, client, fake, endpoint, status):
        response = client.post(PROXY, headers=target(f"https://fal.run/{endpoint}"), json={})
        assert response.status_code == status
        assert "code" not in response.get_json()
        assert "detail" in response.get_json()


def test_each_refusal_is_logged_once_without_secrets(client, fake, caplog):
    caplog.clear()
    client.post(PROXY, headers=target("https://evil.example/"), json={})
    lines = [r.getMessage() for r in caplog.records if r.name == "flask_fal_proxy"]
    assert len(lines) == 1
    assert "invalid_target_url" in lines[0] and "412" in lines[0]


@pytest.mark.parametrize(
    "bad", [f"Key {TEST_KEY}\n", f"Key {TEST_KEY}\r\nX-Evil: 1", f"Key {TEST_KEY}\x00"]
)
def test_credentials_that_are_not_a_header_value_are_refused_without_leaking(
    make_app, fake, caplog, bad
):
    client = make_app(resolve_fal_auth=lambda request: bad).test_client()
    response = client.post(PROXY, headers=target(RUN), json={})
    assert_proxy_error(response, 500, "invalid_credentials")
    assert any("not a valid header value" in r.getMessage() for r in caplog.records)
    assert fake.calls == []


def test_trailing_newline_in_fal_key_is_tolerated(make_app, fake, monkeypatch):
    monkeypatch.setenv("FAL_KEY", TEST_KEY + "\n")
    assert (
        make_app(fal_key=None).test_client().post(PROXY, headers=target(RUN), json={}).status_code
        == 200
    )
    assert fake.calls[0].headers["Authorization"] == f"Key {TEST_KEY}"


@pytest.mark.parametrize(("name", "value"), [("Accept", "\x85"), ("User-Agent", " x")])
def test_a_forwarded_header_requests_would_not_send_is_400(client, fake, caplog, name, value):
    # Found by tests/property/test_request_fuzz.py: requests refused the value
    # while preparing the call, and the route answered 500.
    response = client.post(PROXY, headers={**target(RUN), name: value}, json={})
    assert_proxy_error(response, 400, "invalid_header")
    assert fake.calls == []
    assert not any(value in r.getMessage() for r in caplog.records if value.strip())
