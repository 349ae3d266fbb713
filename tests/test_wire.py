"""What actually crosses the wire, read by a live upstream on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest
import requests
from conftest import TEST_KEY
from live import ProxyServer, RawRequest, Upstream, json_reply

from flask_fal_proxy.testing import LoopbackAdapter

RUN = "https://fal.run/fal-ai/flux/dev"


def send(
    proxy: ProxyServer, method: str = "POST", target: str = RUN, **kwargs
) -> requests.Response:
    headers = {"x-fal-target-url": target, **kwargs.pop("headers", {})}
    with requests.Session() as client:
        client.trust_env = False
        return client.request(method, proxy.url, headers=headers, timeout=10, **kwargs)


def test_request_line_host_and_body_bytes_are_exact():
    body = b'{ "prompt" : "caf\\u00e9  \xe2\x9c\x93",\n "n":1.50 }'
    with Upstream() as upstream, ProxyServer(upstream, TEST_KEY) as proxy:
        response = send(
            proxy,
            target="https://fal.run/fal-ai/caf%C3%A9/v1.2?a=1&b=x+y",
            data=body,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 200
    (seen,) = upstream.requests
    assert (seen.method, seen.target) == ("POST", "/fal-ai/caf%C3%A9/v1.2?a=1&b=x+y")
    assert seen.header("Host") == "fal.run"
    assert seen.body == body
    assert seen.header("Content-Length") == str(len(body))


def test_outbound_headers_are_an_allow_list():
    with (
        Upstream() as upstream,
        ProxyServer(
            upstream,
            TEST_KEY,
            forward_request_headers=["X-Trace-Id"],
            allowed_origins=["https://example.com"],
        ) as proxy,
    ):
        send(
            proxy,
            json={"prompt": "x"},
            headers={
                "Authorization": "Bearer browser-session-token",
                "Cookie": "session=browser-cookie",
                "Accept": "application/json",
                "User-Agent": "browser/1.0",
                "X-Fal-Queue-Priority": "low",
                "x-fal-runner-hint": "abc",
                "X-Trace-Id": "trace-1",
                "X-Forwarded-For": "10.9.9.9",
                "Referer": "https://example.com/page",
                "Origin": "https://example.com",
                "Connection": "keep-alive, X-Fal-Dropme",
                "X-Fal-Dropme": "hop-by-hop by Connection",
                "Proxy-Authorization": "Basic eA==",
            },
        )
    (seen,) = upstream.requests
    assert seen.header("Authorization") == f"Key {TEST_KEY}"
    assert seen.header("x-fal-client-proxy").startswith("flask-fal-proxy/")
    assert seen.header("Content-Type") == "application/json"
    assert seen.header("Accept") == "application/json"
    assert seen.header("User-Agent") == "browser/1.0"
    assert seen.header("x-fal-queue-priority") == "low"
    assert seen.header("x-fal-runner-hint") == "abc"
    assert seen.header("x-trace-id") == "trace-1"
    assert seen.header_names <= {
        "host",
        "authorization",
        "content-type",
        "content-length",
        "accept",
        "user-agent",
        "accept-encoding",
        "x-fal-client-proxy",
        "x-fal-queue-priority",
        "x-fal-runner-hint",
        "x-trace-id",
    }
    everything = json.dumps(seen.headers)
    for leaked in (
        "browser-session-token",
        "browser-cookie",
        "10.9.9.9",
        "example.com",
        "Basic eA==",
        "hop-by-hop",
    ):
        assert leaked not in everything
    assert [v for k, v in seen.headers if k.lower() == "authorization"] == [f"Key {TEST_KEY}"]


def test_get_sends_no_body():
    with Upstream() as upstream, ProxyServer(upstream, TEST_KEY) as proxy:
        send(
            proxy,
            "GET",
            "https://queue.fal.run/fal-ai/flux/requests/r1/status?logs=1",
            headers={"Content-Type": "application/json"},
        )
    (seen,) = upstream.requests
    assert (seen.method, seen.target, seen.body) == (
        "GET",
        "/fal-ai/flux/requests/r1/status?logs=1",
        b"",
    )
    assert (
        "content-length" not in seen.header_names and "transfer-encoding" not in seen.header_names
    )


def test_put_and_delete_without_body_are_forwarded():
    with Upstream() as upstream, ProxyServer(upstream, TEST_KEY) as proxy:
        send(proxy, "PUT", "https://queue.fal.run/fal-ai/flux/requests/r1/cancel")
        send(proxy, "DELETE", "https://queue.fal.run/fal-ai/flux/requests/r1")
    assert [(r.method, r.target, r.body) for r in upstream.requests] == [
        ("PUT", "/fal-ai/flux/requests/r1/cancel", b""),
        ("DELETE", "/fal-ai/flux/requests/r1", b""),
    ]


def test_response_status_headers_and_body_are_relayed():
    body = b'{"detail":[{"msg":"field required"}]}'
    headers = [
        ("X-Fal-Request-Id", "req-1"),
        ("Set-Cookie", "fal_session=upstream-secret"),
        ("Content-Encoding", "identity"),
        ("Keep-Alive", "timeout=5"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("Cache-Control", "no-cache"),
    ]
    with (
        Upstream(json_reply(422, body, headers)) as upstream,
        ProxyServer(upstream, TEST_KEY) as proxy,
    ):
        response = send(proxy, json={})
    assert response.status_code == 422
    assert response.content == body
    assert response.headers["x-fal-request-id"] == "req-1"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-cache"
    assert response.raw.headers.getlist("x-multi") == ["a", "b"]
    for dropped in ("set-cookie", "content-encoding", "keep-alive"):
        assert dropped not in response.headers
    assert "upstream-secret" not in json.dumps(dict(response.headers))


def test_no_content_type_is_invented():
    def bare(request: RawRequest, sock) -> None:
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nraw")

    with Upstream(bare) as upstream, ProxyServer(upstream, TEST_KEY) as proxy:
        response = send(proxy, json={})
    assert response.content == b"raw"
    assert "content-type" not in response.headers


def test_redirects_are_relayed_not_followed():
    redirect = json_reply(302, b"{}", [("Location", "https://evil.example/steal")])
    with Upstream(redirect) as upstream, ProxyServer(upstream, TEST_KEY) as proxy:
        response = send(proxy, json={}, allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://evil.example/steal"
    assert len(upstream.requests) == 1


def test_keep_alive_reuses_one_upstream_connection():
    with Upstream() as upstream, ProxyServer(upstream, TEST_KEY) as proxy:
        statuses = [send(proxy, json={"i": i}).status_code for i in range(25)]
    assert statuses == [200] * 25
    assert len(upstream.requests) == 25
    assert upstream.connections == 1


@pytest.mark.parametrize("trust_env", [True, False])
def test_netrc_never_replaces_the_key(tmp_path, monkeypatch, trust_env):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine fal.run login attacker password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with Upstream() as upstream:
        session = requests.Session()  # a user's session: trust_env is True by default
        session.trust_env = trust_env
        session.mount("https://", LoopbackAdapter(upstream.port))
        with ProxyServer(upstream, TEST_KEY, session=session) as proxy:
            send(proxy, json={})
    (seen,) = upstream.requests
    assert seen.header("Authorization") == f"Key {TEST_KEY}"


def sse_upstream(events: int, interval: float, sent: list[float]):
    def respond(request: RawRequest, sock) -> None:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(events):
            sent.append(time.monotonic())
            chunk = f"data: {json.dumps({'i': i})}\n\n".encode()
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            time.sleep(interval)
        sock.sendall(b"0\r\n\r\n")

    return respond


def test_server_sent_events_arrive_one_by_one():
    sent: list[float] = []
    with (
        Upstream(sse_upstream(6, 0.15, sent)) as upstream,
        ProxyServer(upstream, TEST_KEY) as proxy,
    ):
        response = send(proxy, json={}, stream=True, headers={"Accept": "text/event-stream"})
        assert response.headers["content-type"] == "text/event-stream"
        received: list[tuple[float, bytes]] = []
        for line in response.iter_lines():
            if line:
                received.append((time.monotonic(), line))
    assert [line for _, line in received] == [f'data: {{"i": {i}}}'.encode() for i in range(6)]
    delays = [arrived - sent[i] for i, (arrived, _) in enumerate(received)]
    # Each event is relayed as it is sent, long before the stream ends (0.9 s).
    assert max(delays) < 0.1, delays
    assert received[0][0] < sent[-1]


def test_client_going_away_closes_the_upstream_promptly():
    sent: list[float] = []
    outcome: dict[str, float] = {}

    def endless(request: RawRequest, sock) -> None:
        started = time.monotonic()
        try:
            sse_upstream(200, 0.05, sent)(request, sock)  # 10 s if nobody stops it
        except OSError:
            outcome["broken_after"] = time.monotonic() - started

    with Upstream(endless) as upstream, ProxyServer(upstream, TEST_KEY) as proxy:
        response = send(proxy, json={}, stream=True)
        next(response.iter_content(64))
        response.close()
        deadline = time.monotonic() + 5
        while "broken_after" not in outcome and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "broken_after" in outcome, "upstream kept streaming after the browser left"
    assert outcome["broken_after"] < 3
    assert len(sent) < 100
