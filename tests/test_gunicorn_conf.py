"""example_app/gunicorn.conf.py: what the production settings leave on the machine."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from e2e.harness import clean_env, gunicorn

pytestmark = pytest.mark.e2e


def test_no_control_socket_is_shared_between_apps_of_one_user(tmp_path: Path) -> None:
    """gunicorn 25.1+ puts gunicornc's socket at one path per user; a second app would take it."""
    runtime = tmp_path / "run"
    runtime.mkdir()
    env = clean_env(HOME=str(tmp_path / "home"), XDG_RUNTIME_DIR=str(runtime), SECRET_KEY="s")
    server = gunicorn("example_app.app:app", env)
    try:
        assert requests.get(f"{server.url}/", timeout=10).status_code == 200
        time.sleep(1.5)  # the socket opens once the first workers are up
        sockets = [p.name for p in tmp_path.rglob("*.ctl")]  # removed again at shutdown
        log = server.output()
    finally:
        server.stop()
    assert sockets == [] and "Control socket listening" not in log
