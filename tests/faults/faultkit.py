"""Live parts for fault injection: a misbehaving upstream and the proxy under gunicorn.

The upstream is a raw socket server on 127.0.0.1 so it can do what no HTTP
framework would (lie, stall, reset, send broken chunking); it notes when the
proxy closes each connection, which is how a leaked or drained connection
shows. The proxy runs in a real gunicorn with the recommended configuration,
so call slots (greenlets, or threads under gthread), file descriptors and log
lines are those of production. Its worker holds ``CALLS`` calls, so one call
left stuck by a fault makes a burst of ``CALLS`` slow calls take twice as long.
"""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from e2e.harness import gunicorn_argv, gunicorn_env
from support import LoopbackListener, wait_for_start

from flask_fal_proxy.testing.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class UpstreamConn:
    path: str = ""
    request_head: bytes = b""
    accepted_at: float = field(default_factory=time.monotonic)
    closed_by_peer_at: float | None = None
    bytes_sent: int = 0


Behaviour = Callable[[socket.socket, UpstreamConn], None]


def _read_head(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    return data


def wait_peer_close(sock: socket.socket, conn: UpstreamConn, limit: float = 30.0) -> None:
    """Block until the proxy closes its side, recording when; never longer than ``limit``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], 0.05)
        if ready:
            try:
                if not sock.recv(65536):
                    break
            except OSError:
                break
    else:
        return
    conn.closed_by_peer_at = time.monotonic()


def send_until_peer_closes(
    sock: socket.socket, conn: UpstreamConn, chunk: bytes, every: float, limit: float = 30.0
) -> None:
    """Write forever (bounded by ``limit``) and note when the proxy stops listening."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            sock.sendall(chunk)
            conn.bytes_sent += len(chunk)
        except OSError:
            conn.closed_by_peer_at = time.monotonic()
            return
        ready, _, _ = select.select([sock], [], [], every)
        if ready:
            try:
                if not sock.recv(65536):
                    conn.closed_by_peer_at = time.monotonic()
                    return
            except OSError:
                conn.closed_by_peer_at = time.monotonic()
                return


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultyUpstream(LoopbackListener):
    """A raw HTTP server that picks a behaviour from the request path ``/fault/<name>``."""

    def __init__(self, behaviours: dict[str, Behaviour]) -> None:
        super().__init__(backlog=128)
        self.behaviours = behaviours
        self.conns: list[UpstreamConn] = []
        self._lock = threading.Lock()

    def start(self) -> FaultyUpstream:
        self._start_accepting()
        return self

    def stop(self) -> None:
        self.close()

    def _serve(self, sock: socket.socket) -> None:
        conn = UpstreamConn()
        with self._lock:
            self.conns.append(conn)
        try:
            head = _read_head(sock)
            conn.request_head = head
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split(" ")
            conn.path = parts[1] if len(parts) > 1 else ""
            name = conn.path.split("?")[0].removeprefix("/fault/")
            self.behaviours.get(name, self.behaviours["ok"])(sock, conn)
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def calls(self, name: str) -> list[UpstreamConn]:
        with self._lock:
            return [c for c in self.conns if c.path.split("?")[0] == f"/fault/{name}"]


def closed_port() -> int:
    """A port nobody listens on: connecting to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Blackhole:
    """A listener whose accept queue is full, so new connections hang in SYN-SENT.

    That is a connect timeout without leaving 127.0.0.1: Linux drops a SYN
    when the accept queue of the listener is full.
    """

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.fillers: list[socket.socket] = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fillers.append(s)
        time.sleep(0.2)

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.listener.close()


class Gunicorn:
    """The proxy app in gunicorn; stopped by its own PID only."""

    def __init__(
        self,
        app: str,
        env: dict[str, str],
        log_path: Path,
        workers: int = 1,
        calls: int = 4,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            gunicorn_argv(app, "--access-logfile", "-", *extra_args),
            cwd=ROOT,
            env=gunicorn_env({**os.environ, **env}, workers=workers, calls=calls),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def booted() -> tuple[int, list[int]] | None:
            text = self.text()
            listening = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            pids = [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", text)]
            if listening and len(pids) >= workers:
                return int(listening.group(1)), pids
            return None

        started = wait_for_start(self.proc, booted)
        if started is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.text()}")
            self.stop()
            raise RuntimeError(f"gunicorn did not start:\n{self.text()}")
        self.port, self.worker_pids = started
        self.url = f"http://127.0.0.1:{self.port}/api/fal/proxy"

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def raw_request(port: int, data: bytes, read_timeout: float = 10.0) -> bytes:
    """Send bytes as they are and read until the server closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def status_of(raw: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3})", raw)
    return int(match.group(1)) if match else 0


def response(status: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def closing_response(status: str, content_type: str, body: bytes) -> bytes:
    """A complete answer that ends its connection, so each fault test owns one socket."""
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    return response(status, headers, body)


def ok(sock: socket.socket, conn: UpstreamConn) -> None:
    sock.sendall(closing_response("200 OK", "application/json", b'{"ok":true}'))


def slow_ok(sock: socket.socket, conn: UpstreamConn) -> None:
    time.sleep(BURST_SLEEP)
    ok(sock, conn)


def echo_length(sock: socket.socket, conn: UpstreamConn) -> None:
    """Read the whole request body, then say how long it was."""
    head, _, rest = conn.request_head.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    body = rest
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    conn.request_head = head + b"\r\n\r\n" + body
    answer = f'{{"received":{len(body)}}}'.encode()
    sock.sendall(closing_response("200 OK", "application/json", answer))


BURST_SLEEP = 0.5


def burst_ms(url: str, key_header: dict[str, str], n: int) -> float:
    """Run ``n`` slow calls at once; with ``n`` free call slots this takes one sleep, not two."""
    import requests

    errors: list[BaseException] = []
    statuses: list[int] = []

    def one() -> None:
        try:
            r = requests.get(url, headers={**key_header, "Connection": "close"}, timeout=10)
            statuses.append(r.status_code)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    started = time.monotonic()
    workers = [threading.Thread(target=one) for _ in range(n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=15)
    elapsed = (time.monotonic() - started) * 1000
    assert not errors, errors
    assert statuses == [200] * n, statuses
    return elapsed


FAL_KEY = "fault-key-5ecret-must-not-leak"
CALLS = 4


class Stack:
    """Faulty upstream + refused port + blackhole + gunicorn proxy, and the health checks."""

    def __init__(self, log_dir: Path, behaviours: dict[str, Behaviour], **env: str) -> None:
        self.upstream = FaultyUpstream({"ok": ok, "slow-ok": slow_ok, **behaviours}).start()
        self.blackhole = Blackhole()
        self.refused_port = closed_port()
        try:
            self.proxy = Gunicorn(
                "fault_app:create_app()",
                {
                    "FAULT_UPSTREAM_PORT": str(self.upstream.port),
                    "FAULT_REFUSED_PORT": str(self.refused_port),
                    "FAULT_BLACKHOLE_PORT": str(self.blackhole.port),
                    "FAULT_FAL_KEY": FAL_KEY,
                    **env,
                },
                log_dir / "gunicorn.log",
                calls=CALLS,
                extra_args=("--pythonpath", str(Path(__file__).parent)),
            )
        except BaseException:
            self.upstream.stop()
            self.blackhole.close()
            raise
        self.worker = self.proxy.worker_pids[0]
        self.burst()
        self.baseline_fds = open_fds(self.worker)

    def url(self) -> str:
        return self.proxy.url

    def target(self, name: str, host: str = "fal.run") -> dict[str, str]:
        return {"x-fal-target-url": f"https://{host}/fault/{name}", "Connection": "close"}

    def burst(self) -> float:
        return burst_ms(self.proxy.url, self.target("slow-ok"), CALLS)

    def fds_settle(self, limit: float = 5.0) -> int:
        deadline = time.monotonic() + limit
        count = open_fds(self.worker)
        while count > self.baseline_fds and time.monotonic() < deadline:
            time.sleep(0.05)
            count = open_fds(self.worker)
        return count

    def assert_healthy(self) -> None:
        """After a fault: no fd kept, every call slot free, the key in no log line."""
        assert self.proxy.proc.poll() is None, "gunicorn died"
        assert self.fds_settle() <= self.baseline_fds
        # A busy slot doubles the burst's time; a loaded machine only slows one
        # attempt, so up to three are made before a slot is called stuck.
        limit = 2 * BURST_SLEEP * 1000 * 0.95
        attempts = []
        while len(attempts) < 3 and (not attempts or attempts[-1] >= limit):
            attempts.append(self.burst())
        assert attempts[-1] < limit, f"a call slot is still busy ({attempts} ms)"
        assert FAL_KEY not in self.proxy.text()

    def close(self) -> None:
        self.proxy.stop()
        self.upstream.stop()
        self.blackhole.close()
