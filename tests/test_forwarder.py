"""Unit tests of the fal route's relay with the transport replaced by `responses`."""

from __future__ import annotations

import pytest
import requests
import responses

from flask_fal_proxy import errors
from flask_fal_proxy.blueprint import _FalFace
from flask_fal_proxy.blueprint import fal_request_headers as outbound_headers
from flask_fal_proxy.relay import Relay, default_session
from flask_fal_proxy.validation import Target, parse_target_url

URL = "https://fal.run/fal-ai/flux/dev"
AUTH = "Key unit-test-key"


class Forwarder(Relay):
    """The relay as the fal route drives it: a vetted ``Target`` in, fal's answer out."""

    def forward_target(self, method, target, headers, body):
        return self.forward(method, target.url, headers, body)


@pytest.fixture
def forwarder() -> Forwarder:
    return Forwarder(default_session(), connect_timeout=3, read_timeout=7)


def headers(**extra: str) -> dict[str, str]:
    return {"authorization": AUTH, "content-type": "application/json", **extra}


@responses.activate
def test_sends_method_url_headers_and_body_as_given(forwarder):
    responses.post(URL, json={"ok": True}, status=201, headers={"x-fal-request-id": "r1"})
    body = b'{"prompt": "a  b"}'
    response = forwarder.forward_target(
        "POST", parse_target_url(URL), headers(accept="application/json"), body
    )
    assert response.status_code == 201
    assert b"".join(response.response) == b'{"ok": true}'
    assert response.headers["x-fal-request-id"] == "r1"
    (call,) = responses.calls
    assert call.request.url == URL
    assert call.request.body == body
    assert call.request.headers["authorization"] == AUTH
    assert call.request.headers["accept"] == "application/json"
    assert "cookie" not in call.request.headers
    assert call.request.req_kwargs["timeout"] == (3, 7)
    assert call.request.req_kwargs["stream"] is True


@responses.activate
def test_redirect_is_returned_not_followed(forwarder):
    responses.post(URL, status=307, headers={"Location": "https://evil.example/"})
    response = forwarder.forward_target("POST", parse_target_url(URL), headers(), b"{}")
    assert response.status_code == 307
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    "exc, status, code",
    [
        (requests.ConnectTimeout("slow"), 504, "upstream_timeout"),
        (requests.ReadTimeout("slow"), 504, "upstream_timeout"),
        (requests.ConnectionError("refused"), 502, "upstream_unreachable"),
        (requests.exceptions.SSLError("bad cert"), 502, "upstream_unreachable"),
        (requests.exceptions.ChunkedEncodingError("bad"), 502, "upstream_unreachable"),
    ],
)
@responses.activate
def test_transport_failures_map_to_gateway_errors(forwarder, caplog, exc, status, code):
    responses.post(URL, body=exc)
    with pytest.raises(errors.ProxyError) as raised:
        forwarder.forward_target("POST", parse_target_url(URL), headers(), b"{}")
    assert (raised.value.status, raised.value.code) == (status, code)
    assert "unit-test-key" not in caplog.text
    assert "fal.run" in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        "https://fal.run/a/../b",
        "https://fal.run/a/%41",
        "https://fal.run/a b",
        "https://user:pw@fal.run/a",
        "https://fal.run/a/%2f",
        "HTTPS://FAL.RUN/a",
    ],
)
@responses.activate
def test_a_url_requests_would_rewrite_is_never_sent(forwarder, url):
    # Bypasses parse_target_url on purpose: the forwarder is the second line of defence.
    responses.add(responses.POST, url, json={})
    target = Target(url=url, host="fal.run", path="/a", query="")
    with pytest.raises(errors.ProxyError) as raised:
        forwarder.forward_target("POST", target, headers(), b"{}")
    # The relay's refusal is neutral; the fal route answers it as its 412.
    assert _FalFace.render(None, raised.value).status_code == 412  # type: ignore[arg-type]
    assert len(responses.calls) == 0


@responses.activate
def test_bodyless_statuses_and_head_have_no_body(forwarder):
    responses.get(URL, status=204)
    responses.head(URL, status=200, headers={"Content-Type": "application/json"})
    answer = forwarder.forward_target("GET", parse_target_url(URL), headers(), None)
    assert list(answer.response) == []
    head = forwarder.forward_target("HEAD", parse_target_url(URL), headers(), None)
    assert list(head.response) == [] and head.headers["Content-Type"] == "application/json"


def test_outbound_headers_allow_list():
    incoming = [
        ("Authorization", "Bearer browser"),
        ("Cookie", "a=b"),
        ("Host", "myapp.example"),
        ("X-Fal-Target-Url", URL),
        ("X-Fal-Foo", "1"),
        ("X-Fal-Foo", "2"),
        ("Accept", "text/event-stream"),
        ("User-Agent", "ua"),
        ("Content-Type", "application/json"),
        ("X-Custom", "c"),
        ("Upgrade", "websocket"),
        ("X-Fal-Hop", "h"),
    ]
    result = outbound_headers(incoming, AUTH, ("x-custom",), {"x-fal-hop"})
    assert result == {
        "authorization": AUTH,
        "x-fal-foo": "1, 2",
        "accept": "text/event-stream",
        "user-agent": "ua",
        "content-type": "application/json",
        "x-custom": "c",
        "x-fal-client-proxy": result["x-fal-client-proxy"],
    }
    assert result["x-fal-client-proxy"].startswith("flask-fal-proxy/")


def test_default_session_keeps_no_cookies_and_ignores_the_environment():
    session = default_session()
    assert session.trust_env is False
    jar = session.cookies
    response = requests.Response()
    cookie = requests.cookies.create_cookie("fal_session", "secret", domain="fal.run")
    jar.set_cookie(cookie)
    assert len(jar) == 0
    assert response is not None
