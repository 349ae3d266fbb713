"""fal misbehaving, for real, on 127.0.0.1: each fault has one documented outcome.

Each test also proves, through ``assert_healthy``, that the fault left no
open file descriptor in the gunicorn worker, that every worker thread is
free again, and that the key appears in no log line. The outcomes are the
table of docs/SECURITY.md.
"""

from __future__ import annotations

import socket
import time
import zlib

import pytest
import requests
from faultkit import (
    UpstreamConn,
    closing_response,
    reset,
    response,
    rss_kib,
    send_until_peer_closes,
    wait_peer_close,
)

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 1.0
BOMB_EXPANDED = 256 * 1024 * 1024


def _gzip_bomb() -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(BOMB_EXPANDED // len(zeros))]
    return b"".join(parts) + compressor.flush()


BOMB = _gzip_bomb()


def no_answer(sock: socket.socket, conn: UpstreamConn) -> None:
    wait_peer_close(sock, conn)


def hang_up(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.close()


def stall_mid_body(sock: socket.socket, conn: UpstreamConn) -> None:
    head = response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "1000")])
    sock.sendall(head + b'{"partial":"' + b"x" * 88)
    conn.bytes_sent = 100
    wait_peer_close(sock, conn)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


CHUNKED_SSE = response(
    "200 OK", [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
)


def reset_mid_stream(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.sendall(CHUNKED_SSE + _chunk(b'data: {"step":1}\n\n'))
    time.sleep(0.2)
    reset(sock)


def stall_forever(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.sendall(CHUNKED_SSE + _chunk(b'data: {"step":1}\n\n'))
    wait_peer_close(sock, conn)


def bad_chunked(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.sendall(CHUNKED_SSE + _chunk(b'data: {"step":1}\n\n') + b"zz\r\nnot a chunk\r\n")
    wait_peer_close(sock, conn)


def huge_header(sock: socket.socket, conn: UpstreamConn) -> None:
    big = b"X-Big: " + b"a" * 100_000
    sock.sendall(b"HTTP/1.1 200 OK\r\n" + big + b"\r\nContent-Length: 2\r\n\r\n{}")
    wait_peer_close(sock, conn)


def gzip_bomb(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.sendall(
        response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Encoding", "gzip"),
                ("Content-Length", str(len(BOMB))),
                ("Connection", "close"),
            ],
            BOMB,
        )
    )
    wait_peer_close(sock, conn, limit=10)


def redirect(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.sendall(
        response(
            "302 Found",
            [
                ("Location", "https://fal.run/fault/redirect-target"),
                ("Content-Length", "0"),
                ("Connection", "close"),
            ],
        )
    )


def html_5xx(sock: socket.socket, conn: UpstreamConn) -> None:
    body = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    sock.sendall(closing_response("503 Service Unavailable", "text/html", body))


def infinite(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.sendall(CHUNKED_SSE)
    send_until_peer_closes(sock, conn, _chunk(b'data: {"tick":1}\n\n' * 50), every=0.01)


BEHAVIOURS = {
    "no-answer": no_answer,
    "hang-up": hang_up,
    "stall-mid-body": stall_mid_body,
    "reset-mid-stream": reset_mid_stream,
    "stall-forever": stall_forever,
    "bad-chunked": bad_chunked,
    "huge-header": huge_header,
    "gzip-bomb": gzip_bomb,
    "redirect": redirect,
    "html-5xx": html_5xx,
    "infinite": infinite,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from faultkit import Stack

    stack = Stack(
        tmp_path_factory.mktemp("upstream-faults"),
        BEHAVIOURS,
        FAULT_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        FAULT_READ_TIMEOUT=str(READ_TIMEOUT),
    )
    yield stack
    stack.close()


@pytest.fixture(autouse=True)
def healthy_after(stack):
    log_size = len(stack.proxy.text())
    yield
    stack.assert_healthy()
    stack.new_log = stack.proxy.text()[log_size:]


def closed_by_proxy(conn: UpstreamConn, limit: float = 2.0) -> bool:
    """Whether the proxy closed its end; the upstream notices a moment after the browser."""
    deadline = time.monotonic() + limit
    while conn.closed_by_peer_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return conn.closed_by_peer_at is not None


def call(stack, name: str, path_host: str = "fal.run", **kwargs):
    headers = stack.target(name, path_host)
    started = time.monotonic()
    r = requests.post(stack.url(), headers=headers, json={"prompt": "x"}, timeout=15, **kwargs)
    return r, time.monotonic() - started


def new_log(stack, since: int) -> str:
    return stack.proxy.text()[since:]


def wait_for_log(stack, since: int, needle: str, limit: float = 3.0) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        text = new_log(stack, since)
        if needle in text:
            return text
        time.sleep(0.05)
    return new_log(stack, since)


def test_connection_refused_is_502_json_at_once(stack):
    since = len(stack.proxy.text())
    headers = {"x-fal-target-url": "https://fal.run/refused/app", "Connection": "close"}
    started = time.monotonic()
    r = requests.post(stack.url(), headers=headers, json={}, timeout=15)
    assert time.monotonic() - started < 1.0
    assert r.status_code == 502
    assert r.json()["code"] == "upstream_unreachable"
    assert "fal unreachable: POST fal.run (ConnectionError)" in wait_for_log(
        stack, since, "fal unreachable"
    )


def test_connect_timeout_is_504_json_after_connect_timeout(stack):
    since = len(stack.proxy.text())
    headers = {"x-fal-target-url": "https://fal.run/blackhole/app", "Connection": "close"}
    started = time.monotonic()
    r = requests.post(stack.url(), headers=headers, json={}, timeout=15)
    elapsed = time.monotonic() - started
    assert (r.status_code, r.json()["code"]) == (504, "upstream_timeout")
    assert CONNECT_TIMEOUT * 0.9 <= elapsed < CONNECT_TIMEOUT + 1.5
    assert "fal timed out: POST fal.run (ConnectTimeout)" in wait_for_log(stack, since, "timed out")


def test_no_answer_is_504_json_after_read_timeout_and_the_connection_is_closed(stack):
    since = len(stack.proxy.text())
    r, elapsed = call(stack, "no-answer")
    assert (r.status_code, r.json()["code"]) == (504, "upstream_timeout")
    assert READ_TIMEOUT * 0.9 <= elapsed < READ_TIMEOUT + 1.5
    assert "fal timed out: POST fal.run (ReadTimeout)" in wait_for_log(stack, since, "timed out")
    (conn,) = stack.upstream.calls("no-answer")
    assert closed_by_proxy(conn)


def test_fal_hanging_up_without_an_answer_is_502_json(stack):
    since = len(stack.proxy.text())
    r, elapsed = call(stack, "hang-up")
    assert (r.status_code, r.json()["code"]) == (502, "upstream_unreachable")
    assert elapsed < 1.5
    assert "fal unreachable: POST fal.run (ConnectionError)" in wait_for_log(
        stack, since, "fal unreachable"
    )
    assert len(stack.upstream.calls("hang-up")) == 1, "a paid call must not be retried"


def _read_cut_stream(stack, name: str) -> tuple[int, bytes, float, BaseException | None]:
    started = time.monotonic()
    r = requests.post(stack.url(), headers=stack.target(name), json={}, timeout=15, stream=True)
    received = b""
    error: BaseException | None = None
    try:
        for chunk in r.raw.stream(1024, decode_content=False):
            received += chunk
    except Exception as exc:  # the point: the stream must end in an error
        error = exc
    finally:
        r.close()
    return r.status_code, received, time.monotonic() - started, error


@pytest.mark.parametrize(
    ("name", "min_s", "max_s", "cause"),
    [
        ("stall-mid-body", READ_TIMEOUT * 0.9, READ_TIMEOUT + 1.5, "ReadTimeoutError"),
        ("stall-forever", READ_TIMEOUT * 0.9, READ_TIMEOUT + 1.5, "ReadTimeoutError"),
        ("reset-mid-stream", 0.0, 1.5, "ProtocolError"),
        ("bad-chunked", 0.0, 1.5, "ProtocolError"),
    ],
)
def test_fault_after_the_headers_cuts_the_browser_stream(stack, name, min_s, max_s, cause):
    since = len(stack.proxy.text())
    status, received, elapsed, error = _read_cut_stream(stack, name)
    assert status == 200
    assert error is not None, f"the stream ended cleanly after {received!r}"
    assert min_s <= elapsed < max_s
    log = wait_for_log(stack, since, "fal stream interrupted")
    assert f"fal stream interrupted ({cause})" in log
    (conn,) = stack.upstream.calls(name)
    if name != "reset-mid-stream":
        assert closed_by_proxy(conn)
    if name == "stall-mid-body":
        assert received == b'{"partial":"' + b"x" * 88


def test_100k_response_header_is_502_json(stack):
    since = len(stack.proxy.text())
    r, elapsed = call(stack, "huge-header")
    assert (r.status_code, r.json()["code"]) == (502, "upstream_unreachable")
    assert elapsed < 1.5
    assert "fal unreachable" in wait_for_log(stack, since, "fal unreachable")
    assert "aaaaaaaa" not in new_log(stack, since)


def test_gzip_bomb_is_relayed_compressed_never_inflated(stack):
    rss_before = rss_kib(stack.worker)
    r = requests.post(
        stack.url(), headers=stack.target("gzip-bomb"), json={}, timeout=30, stream=True
    )
    body = b"".join(r.raw.stream(65536, decode_content=False))
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert body == BOMB
    assert len(body) < BOMB_EXPANDED // 500
    assert rss_kib(stack.worker) - rss_before < 20 * 1024


def test_redirect_is_relayed_and_never_followed(stack):
    r, _ = call(stack, "redirect", allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "https://fal.run/fault/redirect-target"
    time.sleep(0.2)
    assert len(stack.upstream.calls("redirect")) == 1
    assert stack.upstream.calls("redirect-target") == []


def test_non_json_5xx_is_relayed_as_is(stack):
    r, _ = call(stack, "html-5xx")
    assert r.status_code == 503
    assert r.headers["content-type"] == "text/html"
    assert r.content.startswith(b"<html><body><h1>503")


def test_browser_gone_mid_stream_closes_the_upstream_promptly(stack):
    request = (
        b"GET /api/fal/proxy HTTP/1.1\r\nHost: proxy\r\n"
        b"x-fal-target-url: https://fal.run/fault/infinite\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=5) as sock:
        sock.sendall(request)
        got = b""
        while got.count(b"tick") < 100:
            chunk = sock.recv(65536)
            assert chunk, "the proxy ended the stream"
            got += chunk
        assert got.startswith(b"HTTP/1.1 200")
    gone_at = time.monotonic()
    (conn,) = stack.upstream.calls("infinite")
    deadline = gone_at + 5
    while conn.closed_by_peer_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert conn.closed_by_peer_at is not None, "the proxy kept reading from fal"
    assert conn.closed_by_peer_at - gone_at < 2.0


def test_browser_gone_before_fal_answers_frees_the_thread_at_read_timeout(stack):
    request = (
        b"POST /api/fal/proxy HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        b"x-fal-target-url: https://fal.run/fault/no-answer\r\nContent-Length: 2\r\n\r\n{}"
    )
    before = len(stack.upstream.calls("no-answer"))
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=5) as sock:
        sock.sendall(request)
        time.sleep(0.2)
    gone_at = time.monotonic()
    deadline = gone_at + READ_TIMEOUT + 3
    while time.monotonic() < deadline:
        conns = stack.upstream.calls("no-answer")[before:]
        if conns and conns[0].closed_by_peer_at is not None:
            break
        time.sleep(0.02)
    (conn,) = stack.upstream.calls("no-answer")[before:]
    assert conn.closed_by_peer_at is not None
    # A synchronous worker cannot notice the browser left while it waits for fal's
    # headers: the wait ends at read_timeout, not earlier, and not later.
    assert conn.closed_by_peer_at - conn.accepted_at < READ_TIMEOUT + 1.0
    assert conn.closed_by_peer_at - conn.accepted_at >= READ_TIMEOUT * 0.9
