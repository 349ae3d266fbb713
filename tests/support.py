"""Test support shared by the suites in tests/, tests/faults and tests/property.

Each piece here had grown a copy in more than one harness; one copy means a
fix to how a server is stopped or a listener is closed reaches every suite.
It is importable as ``support`` from every test directory because pytest puts
tests/ on ``sys.path`` when it loads tests/conftest.py, which also registers
this module for assertion rewriting.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for_start(
    proc: subprocess.Popen[bytes], started: Callable[[], T | None], timeout: float = 30.0
) -> T | None:
    """Poll ``started`` until it has an answer, giving up early if ``proc`` died.

    A server that crashed on boot would otherwise cost the whole timeout
    before its log, the only clue, is shown. ``None`` means it never started.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = started()
        if result is not None:
            return result
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    return None


class LoopbackListener:
    """A raw TCP listener on 127.0.0.1 that serves each connection on its own thread.

    The accept loop polls with ``select`` so ``close`` can stop it within a
    tenth of a second; a blocking ``accept`` would keep the thread (and the
    port) alive past the test. Subclasses implement ``_serve`` and may look
    at ``_stop`` to end a keep-alive loop.
    """

    def __init__(self, backlog: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    def _start_accepting(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.1)
            if not ready:
                continue
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        raise NotImplementedError


def check_generated_section(
    doc: Path, start: str, end: str, generated: str, *, missing: str, add_before: str = ""
) -> None:
    """Fail if the section between ``start`` and ``end`` of ``doc`` is not ``generated``.

    The compatibility tables in the docs are produced by test runs, so the
    document can only drift if nobody re-ran them; FAL_PROXY_UPDATE_COMPAT=1
    rewrites the section instead (adding the markers before ``add_before``
    when they are missing) so the change is reviewed as a diff.
    """
    text = doc.read_text() if doc.exists() else ""
    if os.environ.get("FAL_PROXY_UPDATE_COMPAT") == "1":
        if add_before and start not in text:
            text = text.replace(add_before, f"{start}\n{end}\n\n{add_before}")
        head, _, rest = text.partition(start)
        doc.write_text(f"{head}{start}\n{generated}\n{end}{rest.partition(end)[2]}")
        return
    assert start in text and end in text, missing
    current = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert current == generated, (
        "docs/COMPATIBILITY.md is out of date: run "
        'FAL_PROXY_UPDATE_COMPAT=1 scripts/test -k "compat or server_proxy" and review the diff'
    )


class ServedApp:
    """A WSGI app in a threaded werkzeug server on 127.0.0.1, as SDKs and browsers need."""

    def __init__(self, app: Callable[..., object]) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# bench/run installs wrk and nginx-light; outside CI a short run of the bench needs them present.
needs_bench_tools = pytest.mark.skipif(
    os.environ.get("CI") != "true"
    and (
        not shutil.which("wrk") or not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists())
    ),
    reason="bench/run installs wrk and nginx-light; outside CI this smoke test needs them present",
)
