"""The long-call half of the benchmark: thousands of calls that mostly wait.

A proxied fal call spends its life waiting for fal (``fal.run`` holds the
connection for the whole generation, status streams stay open), so what
bounds a proxy is how many such calls one instance holds and what each one
costs, not its speed on an instant answer. Each case starts the proxy afresh
against ``hold_upstream.py`` so that memory growth is that of the case alone,
and samples the proxy's processes while wrk keeps C calls open: the peak
resident memory over the idle figure, divided by C, is the cost of a held
call. The status-stream and stalled-client probes use raw sockets in this
process, so thousands of connections cost it little CPU.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import resource
import selectors
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wrk
from processes import BENCH, cpu_seconds, free_port, process_tree, start, status_kib
from subjects import Subject, choose, subject_catalogue
from upstream import FAL_ANSWER, FAL_KEY, PROBE_BODY

HOLD_PATH = "https://fal.run/bench/hold/"


def raise_fd_limit() -> int:
    """Up to the hard limit, for this process and every child it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


@dataclass(frozen=True)
class Case:
    hold: float
    calls: int
    rounds: int

    @property
    def seconds(self) -> int:
        """Whole rounds of calls plus a margin for the last round to come back.

        Opening thousands of connections at once takes wrk and the kernel a
        few seconds, so a long call gets half its length again; calls begun
        in the margin do not finish within the run and are not counted.
        """
        return math.ceil(self.rounds * self.hold + max(1.0, self.hold / 2 if self.rounds == 1
                                                        else self.hold / 6))

    @property
    def expected(self) -> int:
        return self.rounds * self.calls

    @property
    def label(self) -> str:
        return f"D={self.hold:g} s, C={self.calls:,}"


def cases(spec: str, quick: bool) -> list[Case]:
    """``"2x512,30x5000"``: D seconds x C calls; ten rounds of a short call, one of a long."""
    found = []
    for item in filter(None, spec.split(",")):
        hold, calls = item.split("x")
        d = float(hold)
        found.append(Case(d, int(calls), 1 if d >= 10 else 2 if quick else 10))
    return found


class Sampler(threading.Thread):
    """Peak resident memory and open descriptors of a process tree, sampled."""

    def __init__(self, root: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.root, self.every = root, every
        self.peak_rss_kib = self.peak_fds = 0
        self.done = threading.Event()

    def snapshot(self) -> tuple[int, int]:
        rss = fds = 0
        for pid in process_tree(self.root):
            try:
                rss += status_kib(pid, "VmRSS")
                fds += len(os.listdir(f"/proc/{pid}/fd"))
            except (OSError, KeyError):
                pass
        return rss, fds

    def run(self) -> None:
        while not self.done.wait(self.every):
            rss, fds = self.snapshot()
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_fds = max(self.peak_fds, fds)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)


def call(subject: Subject, target: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", subject.port, timeout=timeout)
    try:
        conn.request("POST", subject.url_path(target), body=PROBE_BODY,
                     headers=subject.headers(target))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def verify(subject: Subject) -> None:
    status, body = call(subject, HOLD_PATH + "0")
    if status != 200 or json.loads(body) != json.loads(FAL_ANSWER):
        raise RuntimeError(f"{subject.name} does not forward to the holding upstream: "
                           f"{status} {body[:200]!r}")


def held_calls(subject: Subject, case: Case) -> dict:
    """C connections each making back-to-back calls that fal holds D seconds."""
    assert subject.started
    sampler = Sampler(subject.started.proc.pid)
    idle_rss, idle_fds = sampler.snapshot()
    workers = subject.workers()
    cpu0 = cpu_seconds(subject.pids())
    sampler.start()
    try:
        r = wrk.run(subject, case.calls, case.seconds, HOLD_PATH + f"{case.hold:g}",
                    timeout=3 * case.hold + 10)
    finally:
        sampler.stop()
    cpu = cpu_seconds(subject.pids()) - cpu0
    return {
        "hold_s": case.hold, "calls": case.calls, "requests": r["requests"],
        "expected": case.expected, "seconds": case.seconds, "rps": r["rps"],
        "ideal_rps": case.expected / case.seconds,
        "p50_us": r["p50_us"], "p99_us": r["p99_us"], "max_us": r["max_us"],
        "errors": r["errors"], "timeouts": r["timeout"],
        "processes": len(workers), "idle_rss_mib": idle_rss / 1024,
        "peak_rss_mib": sampler.peak_rss_kib / 1024,
        "rss_kib_per_call": (sampler.peak_rss_kib - idle_rss) / case.calls,
        "idle_fds": idle_fds, "peak_fds": sampler.peak_fds,
        "cpu_us_per_request": cpu * 1e6 / r["requests"] if r["requests"] else None,
    }


def streams(subject: Subject, count: int, events: int, interval: float) -> dict:
    """``count`` status streams open at once, one event per interval on each."""
    target = f"https://fal.run/bench/sse?n={events}&interval={interval:g}"
    headers = subject.headers(target)
    headers["Accept"] = "text/event-stream"
    head = (f"GET {subject.url_path(target)} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    sel = selectors.DefaultSelector()
    seen: dict[socket.socket, bytes] = {}
    per_stream: dict[socket.socket, int] = {}
    delays: list[float] = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", subject.port), timeout=10)
        sock.sendall(head)
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        seen[sock], per_stream[sock] = b"", 0
    deadline = time.monotonic() + events * interval + 30
    try:
        while seen and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                sock = key.fileobj
                try:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                received = time.time()
                if not data:
                    sel.unregister(sock)
                    sock.close()  # type: ignore[union-attr]
                    del seen[sock]  # type: ignore[arg-type]
                    continue
                buf = seen[sock] + data  # type: ignore[index]
                *lines, rest = buf.split(b"\n")
                seen[sock] = rest  # type: ignore[index]
                for line in lines:
                    if line.startswith(b"data: "):
                        delays.append((received - json.loads(line[6:])["sent"]) * 1000)
                        per_stream[sock] += 1  # type: ignore[index]
    finally:
        for sock in list(seen):
            sel.unregister(sock)
            sock.close()
        sel.close()
    delays.sort()
    return {
        "streams": count, "events": len(delays), "expected": count * events,
        "complete_streams": sum(1 for n in per_stream.values() if n == events),
        "median_ms": statistics.median(delays) if delays else None,
        "p99_ms": delays[int(len(delays) * 0.99)] if delays else None,
        "max_ms": delays[-1] if delays else None,
    }


def stalled_clients(subject: Subject, count: int, probes: int) -> dict:
    """A normal call's latency, alone and while ``count`` clients stall mid-body."""

    def timed() -> float | None:
        start = time.monotonic()
        try:
            status, _ = call(subject, HOLD_PATH + "0", timeout=5)
        except OSError:
            return None
        return (time.monotonic() - start) * 1000 if status == 200 else None

    before = [timed() for _ in range(probes)]
    head = (f"POST {subject.url_path(HOLD_PATH + '0')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in subject.headers(HOLD_PATH + "0").items())
            + f"Content-Length: {len(PROBE_BODY)}\r\n\r\n").encode() + PROBE_BODY[:1]
    stalled = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", subject.port), timeout=10)
            sock.sendall(head)
            stalled.append(sock)
        time.sleep(1)
        during: list[float | None] = []
        while len(during) < probes and during.count(None) < 3:  # each failure waits 5 s
            during.append(timed())
    finally:
        for sock in stalled:
            sock.close()
    ok_before = [x for x in before if x is not None]
    ok_during = [x for x in during if x is not None]
    base = statistics.median(ok_before) if ok_before else None
    return {
        "stalled": count, "probes": len(during), "failed": len(during) - len(ok_during),
        "before_median_ms": base,
        "during_median_ms": statistics.median(ok_during) if ok_during else None,
        "during_max_ms": max(ok_during) if ok_during else None,
        "added_max_ms": (max(ok_during) - base) if ok_during and base is not None else None,
    }


def long_subjects(port: int, which: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The harness's subject factories, answering from the holding upstream on ``port``.

    Each case starts its subject afresh, so this hands on the factories of
    the subjects that can run, and a note for each that cannot.
    """
    catalogue = subject_catalogue(port)
    del catalogue["upstream"]  # the holding upstream alone is measured by run() itself
    chosen, skipped = choose(catalogue, which, "long-call subjects")
    return {key: catalogue[key] for key in chosen}, skipped


def run(workdir: Path, which: set[str], case_list: list[Case], stream_count: int,
        stream_events: int, stall_count: int, thread_cap: int) -> dict:
    """Every case, stream and stall probe for each subject; the holding upstream alone first.

    A gthread instance holds as many calls as it has threads (``thread_cap``),
    so it runs only the small cases, which already show that limit; more
    calls would only time out.
    """
    port = free_port()
    upstream = start(
        "hold upstream",
        [sys.executable, str(BENCH / "hold_upstream.py"), str(port), FAL_KEY, FAL_ANSWER],
        port, workdir, {},
    )
    makers, skipped = long_subjects(port, which)
    out: dict[str, Any] = {"subjects": {}, "skipped": skipped}
    try:
        direct = Subject("upstream alone (holding server)", port, "/", f"Key {FAL_KEY}")
        print(f"== long calls: {direct.name}", flush=True)
        out["subjects"][direct.name] = {
            "streams": streams(direct, stream_count, stream_events, 0.1),
        }
        for key, make in makers.items():
            row: dict[str, Any] = {"cases": []}
            name = make().name
            print(f"== long calls: {name}", flush=True)
            for case in case_list:
                if key == "gthread" and (case.calls > 512 or case.hold > 2):
                    out["skipped"].append(f"{name}, {case.label}: its {thread_cap} threads "
                                          "hold that many calls; the rest wait or time out")
                    continue
                row["cases"].append(with_subject(make, workdir, lambda s, c=case:
                                                 held_calls(s, c)))
                c = row["cases"][-1]
                print(f"   {case.label}: {c['rps']:.0f} req/s of {c['ideal_rps']:.0f}, "
                      f"{c['errors']} errors", flush=True)
            if key == "gthread" and stream_count > thread_cap:
                out["skipped"].append(f"{name}, {stream_count:,} streams: {thread_cap} threads "
                                      "serve that many streams at a time")
            else:
                row["streams"] = with_subject(
                    make, workdir, lambda s: streams(s, stream_count, stream_events, 0.1))
            row["stalled"] = with_subject(make, workdir, lambda s: stalled_clients(
                s, stall_count, 20))
            out["subjects"][name] = row
    finally:
        upstream.stop()
    return out


def with_subject(make: Any, workdir: Path, measure: Any) -> dict:
    subject = make()
    subject.start(workdir)
    try:
        verify(subject)
        wrk.run(subject, 64, 1, HOLD_PATH + "0")  # every worker warm, its pool opened
        time.sleep(0.5)
        return measure(subject)
    finally:
        subject.stop()

