"""What actually arrives on 127.0.0.1: request line and Host, read off a raw socket.

HTTP libraries normalise URLs on the way out, so the only proof that the
approved URL is the sent URL is to look at the bytes another process got.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from support import LoopbackListener

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
IN_CI = bool(os.environ.get("CI"))


def budget(examples: int) -> settings:
    """A few thousand examples by default, twenty times more with HYPOTHESIS_PROFILE=long.

    In CI the examples are derandomized (a fixed seed per test) so a red build
    is reproducible and not a coincidence of that run.
    """
    return settings(
        max_examples=examples * (20 if LONG else 1),
        derandomize=IN_CI,
        deadline=None,
        database=None if IN_CI else settings.default.database,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@dataclass
class Seen:
    request_line: str
    headers: dict[str, str]
    body: bytes

    @property
    def host(self) -> str | None:
        return self.headers.get("host")

    @property
    def probe(self) -> str | None:
        return self.headers.get("x-fal-probe")


class WireRecorder(LoopbackListener):
    """Answers every request with ``{}`` and keeps its request line, headers and body."""

    def __init__(self) -> None:
        super().__init__(backlog=64)
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._start_accepting()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        with sock:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers.setdefault(name.strip().lower(), value.strip())
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                with self._lock:
                    self.seen.append(Seen(lines[0], headers, body))
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\n\r\n{}"
                )

    def take(self, probe: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.probe == probe]

    def take_all(self) -> list[Seen]:
        with self._lock:
            seen, self.seen = self.seen, []
        return seen


REQUEST_LINE = re.compile(r"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/1\.1")
