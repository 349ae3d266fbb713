"""Probes that need no load generator's statistics: does it forward, stream, reuse, stay small.

Each one makes a few calls itself and reads what only it can see: the
body that came back (a proxy that does not forward is never timed), the
delay of each event of a stream, the connections nginx accepted, and the
peak memory of the workers while a large body passes.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable

import wrk
from processes import reset_peak_rss, status_kib
from subjects import Subject
from upstream import FAL_ANSWER, MIB, PROBE_BODY, TARGET, Upstream


def verify(subject: Subject) -> None:
    """One real call first: a proxy that does not forward must not be timed."""
    conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=10)
    conn.request("POST", subject.url_path(TARGET), body=PROBE_BODY,
                 headers=subject.headers(TARGET))
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    conn.close()
    if resp.status != 200 or json.loads(body) != json.loads(FAL_ANSWER):
        raise RuntimeError(
            f"{subject.name} does not forward: {resp.status} {body[:200]!r} "
            "(the upstream answers 200 only to 'Authorization: Key <bench key>')"
        )


def sse_probe(subject: Subject, events: int, interval: float) -> dict:
    target = f"https://fal.run/bench/sse?n={events}"
    conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=10)
    headers = subject.headers(target)
    headers["Accept"] = "text/event-stream"
    conn.request("GET", subject.url_path(target), headers=headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"{subject.name}: event stream answered {resp.status}")
    delays = []
    while True:
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            received = time.time()
            delays.append((received - json.loads(line[6:])["sent"]) * 1000)
    conn.close()
    return {
        "events": len(delays),
        "expected": events,
        "median_ms": statistics.median(delays) if delays else None,
        "max_ms": max(delays) if delays else None,
    }


def keepalive_probe(
    subject: Subject, upstream: Upstream, requests: int, since: tuple[int, int]
) -> dict:
    """Count the upstream connections a fixed number of proxied calls open.

    Counted from ``since``, nginx's counters before the proxy started, so
    the connections its first (verifying) call opened count too. wrk's
    script stops sending after ``requests`` answers, but wrk itself waits out
    its duration; nginx's request counter says when the calls are done, and
    SIGINT makes wrk report at once.
    """
    accepts0, _ = since
    _, requests0 = upstream.counters()
    proc = subprocess.Popen(
        wrk.argv(subject, 64, 120), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=wrk.env(subject, max_requests=requests),
    )
    deadline = time.monotonic() + 120
    polls = 0
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            polls += 1
            if upstream.counters()[1] - requests0 - polls >= requests:
                time.sleep(0.2)
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = wrk.parse(subject, stdout, stderr)
    accepts1, _ = upstream.counters()
    # Status queries after `since`, each on its own connection: the first
    # one above, the polls, and the last one.
    queries = 1 + polls + 1
    return {"requests": result["requests"], "connections": accepts1 - accepts0 - queries,
            "errors": result["errors"]}


def memory_probe(subject: Subject, big_bytes: int, post_bytes: int) -> dict:
    workers = subject.workers()

    def measure(call: Callable[[], None]) -> float:
        baseline = {}
        for pid in workers:
            reset_peak_rss(pid)
            baseline[pid] = status_kib(pid, "VmRSS")
        call()
        return max(status_kib(pid, "VmHWM") - baseline[pid] for pid in workers) / 1024

    def download() -> None:
        target = "https://fal.run/bench/big"
        conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=30)
        conn.request("GET", subject.url_path(target), headers=subject.headers(target))
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{subject.name}: large download answered {resp.status}")
        buf = bytearray(MIB)
        got = 0
        start = time.monotonic()
        while n := resp.readinto(buf):
            got += n
        state["seconds"] = time.monotonic() - start
        conn.close()
        if got != big_bytes:
            raise RuntimeError(f"{subject.name}: large download got {got} of {big_bytes} bytes")

    def upload() -> None:
        body = b'{"data":"' + b"a" * (post_bytes - 11) + b'"}'
        conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=60)
        conn.request("POST", subject.url_path(TARGET), body=body, headers=subject.headers(TARGET))
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"{subject.name}: large upload answered {resp.status}")

    state: dict[str, float] = {}
    grew_download = measure(download)
    grew_upload = measure(upload)
    return {
        "download_mib": big_bytes / MIB,
        "download_growth_mib": grew_download,
        "download_mib_per_s": big_bytes / MIB / state["seconds"],
        "upload_mib": post_bytes / MIB,
        "upload_growth_mib": grew_upload,
    }


def redis_keys(subject: Subject) -> int | None:
    """Keys in the subject's redis, if it has one: none after a call means nothing was metered."""
    redis = next((c for c in subject.companions if c.name == "redis-server"), None)
    if redis is None:
        return None
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as sock:
        sock.sendall(b"*1\r\n$6\r\nDBSIZE\r\n")
        answer = sock.recv(64)
    if not answer.startswith(b":"):
        raise RuntimeError(f"{subject.name}: redis answered DBSIZE with {answer!r}")
    keys = int(answer[1:].split(b"\r\n", 1)[0])
    if keys == 0:
        raise RuntimeError(f"{subject.name}: a call went through, but track_usage wrote "
                           "nothing to redis")
    return keys
