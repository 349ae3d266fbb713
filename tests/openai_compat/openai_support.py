"""Shared by the OpenAI facade's tests: keys, the served app, and what fal received."""

from __future__ import annotations

from typing import Any

import openai
from support import ServedApp

from flask_fal_proxy.testing import OPENAI_MODELS, FakeFal

FAL_KEY = "fal-first-5ecret"
ACCESS_KEY = "client-access-5ecret"
SECOND_KEY = "fal-second-5ecret"
THIRD_KEY = "fal-third-5ecret"
REVOKED_KEY = "fal-revoked-5ecret"
LIMITED_KEY = "fal-limited-5ecret"
SECRETS = (FAL_KEY, SECOND_KEY, THIRD_KEY, REVOKED_KEY, LIMITED_KEY, ACCESS_KEY)
MODELS = {**OPENAI_MODELS, "missing": "fal-ai/no-such-model"}


class Served(ServedApp):
    """The facade on 127.0.0.1, with an ``openai`` client pointed at it."""

    def client(self, api_key: str = ACCESS_KEY, max_retries: int = 0) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.url}/v1",
            api_key=api_key,
            max_retries=max_retries,
            timeout=30,
            http_client=openai.DefaultHttpxClient(trust_env=False),
        )


def submits(fal: FakeFal, endpoint: str | None = None) -> list[Any]:
    """The queue submits fal received (for ``endpoint`` if given), oldest first."""
    return [
        c
        for c in fal.calls
        if c.method == "POST"
        and c.host == "queue.fal.run"
        and (endpoint is None or c.path == f"/{endpoint}")
    ]


def key_of(call: Any) -> str:
    return call.headers["Authorization"].removeprefix("Key ")
