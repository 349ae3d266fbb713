"""Constants and helpers the provider tests import (conftest.py holds only fixtures)."""

from __future__ import annotations

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
