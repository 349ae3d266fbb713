"""Processes for the end-to-end tests: gunicorn, Node, and the tools they need.

Every server binds port 0 and reports the port it got, so parallel runs and
other servers on the machine never collide; every process is stopped by the
PID this module started. On CI a missing tool fails the run instead of
skipping it, because a skipped browser test proves nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import wait_for_start

from flask_fal_proxy.testing.processes import stop_process

E2E_DIR = Path(__file__).resolve().parent
ROOT = E2E_DIR.parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
VENV_BIN = Path(sys.executable).parent


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if on_ci():
        pytest.fail(f"{reason} (required on CI; scripts/bootstrap.sh installs it)")
    pytest.skip(f"{reason}; run scripts/test to install it")


def require_node() -> str:
    node = shutil.which("node")
    require(node is not None, "Node.js is not installed")
    require(
        (E2E_DIR / "node_modules" / "@fal-ai" / "client").is_dir(), "tests/e2e is not npm-installed"
    )
    return node  # type: ignore[return-value]


def require_chromium() -> str:
    require(os.access(CHROMIUM, os.X_OK), f"chromium is not installed at {CHROMIUM}")
    bundle = ROOT / "example_app" / "static" / "fal-client.js"
    require(
        bundle.is_file(), "the example page's bundle is not built (npm run build in example_app)"
    )
    return CHROMIUM


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any fal credentials, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET") and not k.startswith("GUNICORN")
    }
    env.update(extra)
    return env


class Server:
    """A child process that prints the address it listens on."""

    def __init__(self, argv: list[str], env: dict[str, str], ready: str, cwd: Path = ROOT):
        self.log = tempfile.NamedTemporaryFile(prefix="e2e-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.port = self._wait_for_port(re.compile(ready))
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def _wait_for_port(self, ready: re.Pattern[str]) -> int:
        def listening() -> int | None:
            match = ready.search(self.output())
            if not match:
                return None
            port = int(match.group(1))
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                return port

        port = wait_for_start(self.proc, listening)
        if port is not None:
            return port
        output = self.output()
        self.stop()
        raise RuntimeError(f"server did not start:\n{output}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        os.unlink(self.log.name)


def gunicorn_argv(app: str, *extra: str) -> list[str]:
    """The one gunicorn command line of the suite: the example's production settings."""
    conf = ROOT / "example_app" / "gunicorn.conf.py"
    return [str(VENV_BIN / "gunicorn"), "-c", str(conf), *extra, app]


def gunicorn_env(env: dict[str, str], workers: int = 1, calls: int = 8) -> dict[str, str]:
    """``env`` for a lean gunicorn: ``workers`` processes holding ``calls`` calls each.

    The worker class is the configuration's default (the recommended one)
    unless the suite itself runs with ``GUNICORN_WORKER_CLASS`` set, so that
    ``GUNICORN_WORKER_CLASS=gthread scripts/test`` checks the alternative
    with every suite that starts gunicorn through here.
    """
    env = {
        **env,
        "BIND": "127.0.0.1:0",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_CALLS_PER_WORKER": str(calls),
    }
    worker_class = os.environ.get("GUNICORN_WORKER_CLASS")
    if worker_class:
        env["GUNICORN_WORKER_CLASS"] = worker_class
    else:
        env.pop("GUNICORN_WORKER_CLASS", None)
    return env


def gunicorn(app: str, env: dict[str, str], *extra: str) -> Server:
    """``app`` under gunicorn with the example's production settings, one lean worker."""
    return Server(
        gunicorn_argv(app, *extra), gunicorn_env(env), r"Listening at: http://127\.0\.0\.1:(\d+)"
    )


def node_server(script: str, env: dict[str, str], *node_args: str) -> Server:
    node = require_node()
    return Server([node, *node_args, script], env, r"listening on (\d+)", cwd=E2E_DIR)


def run_node(
    script: str,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: Path = E2E_DIR,
):
    """Run a script of ``cwd`` (tests/e2e) and return the JSON object on its last output line."""
    node = require_node()
    done = subprocess.run(
        [node, str(cwd / script), *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise AssertionError(f"{script} {args} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(lines[-1])
