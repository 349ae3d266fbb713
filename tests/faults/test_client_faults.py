"""Hostile or broken browsers against the proxy under gunicorn, bytes as sent on the socket.

Gunicorn parses the request before the proxy sees it, so some outcomes here
are gunicorn's (a plain 400) and the point is that nothing reaches fal; the
others are the proxy's JSON answers. Every test ends with ``assert_healthy``.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from faultkit import CALLS, Stack, burst_ms, echo_length, raw_request, status_of

MAX_BODY = 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(
        tmp_path_factory.mktemp("client-faults"),
        {"echo": echo_length},
        FAULT_MAX_BODY=str(MAX_BODY),
    )
    yield stack
    stack.close()


@pytest.fixture(autouse=True)
def healthy_after(stack):
    yield
    stack.assert_healthy()


HEAD = b"POST /api/fal/proxy HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n"
TARGET = b"x-fal-target-url: https://fal.run/fault/echo\r\n"
JSON = b"Content-Type: application/json\r\n"


def echo_calls(stack) -> int:
    return len([c for c in stack.upstream.conns if c.path.startswith("/fault/echo")])


def body_json(raw: bytes) -> dict:
    body = raw.split(b"\r\n\r\n", 1)[1]
    if b"transfer-encoding: chunked" in raw.split(b"\r\n\r\n", 1)[0].lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return json.loads(body)


MALFORMED = {
    "line without a colon": HEAD + TARGET + b"Bogus header line\r\n",
    "space before the colon": HEAD + b"x-fal-target-url : https://fal.run/fault/echo\r\n",
    "obsolete line folding": HEAD + b"x-fal-target-url: https://fal.run/\r\n fault/echo\r\n",
    "NUL in a value": HEAD + b"x-fal-target-url: https://fal.run/fault/echo\x00\r\n",
    "CR injected into the target": HEAD
    + b"x-fal-target-url: https://fal.run/fault/echo\rAuthorization: Key stolen\r\n",
    "LF injected into the target": HEAD
    + b"x-fal-target-url: https://fal.run/fault/echo\nAuthorization: Key stolen\r\n",
    "space in a header name": HEAD + TARGET + b"x fal: 1\r\n",
    "Content-Length and Transfer-Encoding": HEAD + TARGET + b"Transfer-Encoding: chunked\r\n",
    "two different Content-Lengths": HEAD + TARGET + b"Content-Length: 3\r\n",
    "negative Content-Length": HEAD + TARGET.replace(b"\r\n", b"\r\nContent-Length: -1\r\n"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_headers_get_400_from_gunicorn_and_reach_nobody(stack, case):
    before = echo_calls(stack)
    raw = raw_request(stack.proxy.port, MALFORMED[case] + JSON + b"Content-Length: 2\r\n\r\n{}")
    assert status_of(raw) == 400
    assert echo_calls(stack) == before


def test_non_ascii_target_is_refused_by_the_proxy(stack):
    before = echo_calls(stack)
    request = HEAD + "x-fal-target-url: https://fal.run/fault/échо\r\n".encode() + JSON
    raw = raw_request(stack.proxy.port, request + b"Content-Length: 2\r\n\r\n{}")
    assert status_of(raw) == 412
    assert body_json(raw)["code"] == "invalid_target_url"
    assert echo_calls(stack) == before


@pytest.mark.parametrize(
    "second",
    [b"https://fal.run/fault/echo", b"x", b"https://fal.run/fault/other", b"evil.example"],
)
def test_duplicate_target_headers_are_412_whatever_gunicorn_joins_them_into(stack, second):
    before = echo_calls(stack)
    request = HEAD + TARGET + b"x-fal-target-url: " + second + b"\r\n" + JSON
    raw = raw_request(stack.proxy.port, request + b"Content-Length: 2\r\n\r\n{}")
    assert status_of(raw) == 412
    assert body_json(raw)["code"] == "invalid_target_url"
    assert echo_calls(stack) == before


def test_declared_length_longer_than_the_body_is_400_and_not_forwarded(stack):
    before = echo_calls(stack)
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=10) as sock:
        sock.sendall(HEAD + TARGET + JSON + b'Content-Length: 100\r\n\r\n{"a":1}')
        sock.shutdown(socket.SHUT_WR)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert status_of(raw) == 400
    assert body_json(raw)["code"] == "incomplete_body"
    assert echo_calls(stack) == before


def test_silent_liar_holds_one_thread_only_while_connected(stack):
    before = echo_calls(stack)
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=10) as sock:
        sock.sendall(HEAD + TARGET + JSON + b'Content-Length: 100\r\n\r\n{"a":1}')
        time.sleep(0.3)
        # one thread waits for the missing bytes; the others still serve at once
        assert burst_ms(stack.url(), stack.target("slow-ok"), CALLS - 1) < 950
    assert echo_calls(stack) == before


def test_declared_length_shorter_than_the_body_forwards_exactly_the_declared_bytes(stack):
    before = echo_calls(stack)
    raw = raw_request(
        stack.proxy.port,
        HEAD + TARGET + JSON + b"Content-Length: 2\r\n\r\n{}" + b"GET /smuggled HTTP/1.1\r\n\r\n",
    )
    assert status_of(raw) == 200
    assert body_json(raw) == {"received": 2}
    assert echo_calls(stack) == before + 1
    assert not any(c.path.startswith("/smuggled") for c in stack.upstream.conns)


def test_declared_oversize_is_413_before_the_body_is_sent(stack):
    before = echo_calls(stack)
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=5) as sock:
        sock.sendall(HEAD + TARGET + JSON + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert status_of(raw) == 413
    assert body_json(raw)["code"] == "payload_too_large"
    assert echo_calls(stack) == before


def test_chunked_upload_is_cut_at_the_limit(stack):
    before = echo_calls(stack)
    piece = b"[" + b"0," * 32767 + b"0]"
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=10) as sock:
        sock.sendall(HEAD + TARGET + JSON + b"Transfer-Encoding: chunked\r\n\r\n")
        raw = b""
        try:
            for _ in range(2 * MAX_BODY // len(piece)):
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        try:
            while chunk_in := sock.recv(65536):
                raw += chunk_in
        except OSError:
            pass
    assert status_of(raw) == 413
    assert echo_calls(stack) == before


def test_slow_large_upload_arrives_whole_while_other_calls_are_served(stack):
    body = json.dumps({"data": "x" * (MAX_BODY - 100)}).encode()
    result: dict[str, bytes] = {}

    def upload() -> None:
        with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=20) as sock:
            sock.sendall(HEAD + TARGET + JSON + f"Content-Length: {len(body)}\r\n\r\n".encode())
            for at in range(0, len(body), 64 * 1024):
                sock.sendall(body[at : at + 64 * 1024])
                time.sleep(0.05)
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
            result["raw"] = raw

    uploader = threading.Thread(target=upload)
    started = time.monotonic()
    uploader.start()
    time.sleep(0.2)
    assert burst_ms(stack.url(), stack.target("slow-ok"), CALLS - 1) < 950
    uploader.join(timeout=30)
    assert time.monotonic() - started > 0.7
    assert status_of(result["raw"]) == 200
    assert body_json(result["raw"]) == {"received": len(body)}


def test_a_reset_in_the_middle_of_the_body_is_the_clients_error_not_ours(stack):
    # Under gunicorn+gevent, 500 such resets once wrote 500 ERROR lines.
    from faultkit import reset

    before = echo_calls(stack)
    log_before = len(stack.proxy.text())
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=10)
        sock.sendall(HEAD + TARGET + JSON + b'Content-Length: 100000\r\n\r\n{"a":' + b"1" * 500)
        time.sleep(0.01)
        reset(sock)
    time.sleep(0.5)
    log = stack.proxy.text()[log_before:]
    assert "ERROR" not in log and "unexpected" not in log, log[-2000:]
    assert echo_calls(stack) == before
