"""Fixtures for the OpenAI facade: a fake fal on loopback and the app on 127.0.0.1.

The app runs in a thread of this process so that a test can read what the
fake received and what was logged; the ``openai`` SDK talks to it over real
HTTP, as any client would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flask
import openai
import pytest

from flask_fal_proxy.openai_compat import create_openai_blueprint, jobs
from flask_fal_proxy.testing import FakeFal
from openai_compat.fal_faults import FaultyFal
from openai_compat.openai_support import (
    ACCESS_KEY,
    FAL_KEY,
    LIMITED_KEY,
    MODELS,
    SECOND_KEY,
    SECRETS,
    THIRD_KEY,
    Served,
)


@pytest.fixture(scope="session")
def fal_fake() -> Iterator[FakeFal]:
    with FakeFal(
        key=FAL_KEY,
        keys=(SECOND_KEY, THIRD_KEY),
        rate_limited_keys=(LIMITED_KEY,),
        media_urls=True,
        stream_delay=0.0,
    ) as fake:
        yield fake


@pytest.fixture
def fal(fal_fake: FakeFal) -> FakeFal:
    fal_fake.calls.clear()
    fal_fake.document_delay = 0.0
    return fal_fake


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake finishes a job on its third status poll; no need to wait 50 ms for each."""
    monkeypatch.setattr(jobs, "FIRST_POLL", 0.005)


@pytest.fixture(autouse=True)
def _no_secret_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test doubles as a leak check for every key, fal's and the clients'."""
    yield
    for record in caplog.records:
        message = record.getMessage()
        assert not any(secret in message for secret in SECRETS), message


@pytest.fixture
def serve(fal: FakeFal, serve_app: Callable[..., Served]) -> Callable[..., Served]:
    """Serve a blueprint made with these overrides; stopped after the test."""

    def start(**overrides: Any) -> Served:
        overrides.setdefault("models", MODELS)
        overrides.setdefault("access_keys", [ACCESS_KEY])
        overrides.setdefault("fal_keys", [FAL_KEY])
        overrides.setdefault("session", fal.session())
        app = flask.Flask("openai-facade-under-test")
        app.register_blueprint(create_openai_blueprint(**overrides))
        return serve_app(app, Served)

    return start


@pytest.fixture
def served(serve: Callable[..., Served]) -> Served:
    return serve()


@pytest.fixture
def api(served: Served) -> openai.OpenAI:
    """The SDK pointed at a facade with every catalogued model and one fal key."""
    return served.client()


@pytest.fixture
def faulty() -> Iterator[FaultyFal]:
    """A fal that cuts or stalls its answers at a chosen stage (fal_faults.py)."""
    fal = FaultyFal()
    yield fal
    fal.close()
