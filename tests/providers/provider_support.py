"""Constants and helpers the provider tests import (conftest.py holds only fixtures)."""

from __future__ import annotations

import os
from typing import Any

from support import ServedApp

ANTHROPIC_KEY = "sk-ant-test-5ecret-never-leak"
ELEVENLABS_KEY = "xi-test-5ecret-never-leak"
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ELEVENLABS_API_KEY", "OPENAI_API_KEY")


# The provider tests serve their apps the way every suite does.
Served = ServedApp


def assert_no_key(response: Any) -> None:
    """Neither key anywhere in a response's headers or body."""
    blob = repr(list(response.headers.items())).encode() + response.get_data()
    for key in (ANTHROPIC_KEY, ELEVENLABS_KEY):
        assert key.encode() not in blob


class RedisServer:
    """A real redis-server on a free 127.0.0.1 port, stopped (and only it) by its PID.

    ``password`` starts it with ``requirepass``, and ``url`` then carries
    it, as a deployer's would; tests that kill or stall the server start
    their own with ``with RedisServer() as redis: ...``.
    """

    def __init__(self, password: str | None = None) -> None:
        import shutil
        import socket
        import subprocess
        import tempfile

        from e2e.harness import require

        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        require(os.access(binary, os.X_OK), "redis-server is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workdir = tempfile.mkdtemp(prefix="redis-test-")
        options = ["--requirepass", password] if password else []
        self.proc = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.workdir,
                "--protected-mode",
                "yes",
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        import redis
        from support import wait_for_start

        def answers() -> bool | None:
            try:
                return redis.Redis.from_url(self.url, socket_timeout=1).ping() or None
            except redis.RedisError:
                return None

        if not wait_for_start(self.proc, answers, timeout=15):
            self.stop()
            raise RuntimeError("redis-server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        import shutil
        import signal

        from flask_fal_proxy.testing.processes import stop_process

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stalled server must wake to stop
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)
