"""Constants and helpers the provider tests import (conftest.py holds only fixtures)."""

from __future__ import annotations

import threading
from typing import Any

import flask
from werkzeug.serving import make_server

ANTHROPIC_KEY = "sk-ant-test-5ecret-never-leak"
ELEVENLABS_KEY = "xi-test-5ecret-never-leak"
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "ELEVENLABS_API_KEY", "OPENAI_API_KEY")


class Served:
    """An app in a threaded werkzeug server on 127.0.0.1, as SDKs and browsers need."""

    def __init__(self, app: flask.Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def assert_no_key(response: Any) -> None:
    """Neither key anywhere in a response's headers or body."""
    blob = repr(list(response.headers.items())).encode() + response.get_data()
    for key in (ANTHROPIC_KEY, ELEVENLABS_KEY):
        assert key.encode() not in blob
