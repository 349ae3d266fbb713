from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.testing import FakeFal

# Before any test module imports it, so its assertions report like a test's.
pytest.register_assert_rewrite("support")

TEST_KEY = "test-key-5ecret-never-leak"
PROXY = "/api/fal/proxy"


@pytest.fixture(scope="session")
def fake_fal() -> Iterator[FakeFal]:
    with FakeFal(key=TEST_KEY, stream_delay=0.01) as fake:
        yield fake


@pytest.fixture
def fake(fake_fal: FakeFal) -> FakeFal:
    fake_fal.calls.clear()
    return fake_fal


@pytest.fixture
def make_app(fake: FakeFal) -> Callable[..., flask.Flask]:
    def factory(fal_key: str | None = TEST_KEY, **overrides: Any) -> flask.Flask:
        app = flask.Flask("proxy-under-test")
        if fal_key is not None:
            app.config["FAL_KEY"] = fal_key
        overrides.setdefault("session", fake.session())
        app.register_blueprint(create_blueprint(**overrides))
        return app

    return factory


@pytest.fixture
def client(make_app: Callable[..., flask.Flask]) -> flask.testing.FlaskClient:
    return make_app().test_client()


@pytest.fixture(autouse=True)
def _key_never_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every test doubles as a leak check: the key must not reach any log line."""
    monkeypatch.delenv("FAL_KEY", raising=False)
    monkeypatch.delenv("FAL_KEY_ID", raising=False)
    monkeypatch.delenv("FAL_KEY_SECRET", raising=False)
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        assert TEST_KEY not in record.getMessage(), record.getMessage()


@pytest.fixture
def serve_app() -> Iterator[Callable[..., Any]]:
    """Serve apps on 127.0.0.1 for one test (``serve_app(app, kind=ServedApp)``), then stop them."""
    from support import ServedApp  # after register_assert_rewrite above

    started: list[ServedApp] = []

    def start(app: flask.Flask, kind: type[ServedApp] = ServedApp) -> ServedApp:
        served = kind(app)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def target(url: str) -> dict[str, str]:
    return {"x-fal-target-url": url}
