"""Fixtures for the provider routes: the fakes on loopback and an app serving all three faces."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest

from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.testing import FakeAnthropic, FakeElevenLabs
from providers.provider_support import ANTHROPIC_KEY, ELEVENLABS_KEY, KEY_VARIABLES, Served


@pytest.fixture(scope="session")
def anthropic_fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(key=ANTHROPIC_KEY, stream_delay=0.01) as fake:
        yield fake


@pytest.fixture(scope="session")
def elevenlabs_fake() -> Iterator[FakeElevenLabs]:
    with FakeElevenLabs(key=ELEVENLABS_KEY, stream_delay=0.005) as fake:
        yield fake


@pytest.fixture
def fakes(
    anthropic_fake: FakeAnthropic, elevenlabs_fake: FakeElevenLabs
) -> tuple[FakeAnthropic, FakeElevenLabs]:
    anthropic_fake.calls.clear()
    elevenlabs_fake.calls.clear()
    elevenlabs_fake.sent.clear()
    return anthropic_fake, elevenlabs_fake


def app_factory(anthropic: FakeAnthropic, elevenlabs: FakeElevenLabs) -> Callable[..., flask.Flask]:
    def factory(**options: Any) -> flask.Flask:
        app = flask.Flask("providers-under-test")
        app.config["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY
        app.config["ELEVENLABS_API_KEY"] = ELEVENLABS_KEY
        app.register_blueprint(
            create_provider_blueprint("anthropic", session=anthropic.session(), **options)
        )
        app.register_blueprint(
            create_provider_blueprint("elevenlabs", session=elevenlabs.session(), **options)
        )
        return app

    return factory


@pytest.fixture
def provider_app(fakes: tuple[FakeAnthropic, FakeElevenLabs]) -> Callable[..., flask.Flask]:
    """An app with the Anthropic and ElevenLabs routes; keyword arguments go to both."""
    return app_factory(*fakes)


@pytest.fixture(scope="module")
def served(anthropic_fake: FakeAnthropic, elevenlabs_fake: FakeElevenLabs) -> Iterator[Served]:
    """The default provider app in a real server, shared by a module's tests."""
    server = Served(app_factory(anthropic_fake, elevenlabs_fake)())
    yield server
    server.stop()


@pytest.fixture
def serve(serve_app: Callable[..., Served]) -> Callable[[flask.Flask], Served]:
    return serve_app


@pytest.fixture(autouse=True)
def _provider_keys_never_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every provider test doubles as a leak check for the provider keys."""
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        message = record.getMessage()
        assert ANTHROPIC_KEY not in message and ELEVENLABS_KEY not in message, message


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on 127.0.0.1, started for this run and stopped by its PID."""
    import shutil
    import socket
    import subprocess
    import tempfile

    import redis
    from e2e.harness import require
    from support import wait_for_start

    from flask_fal_proxy.testing.processes import stop_process

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    require(os.access(binary, os.X_OK), "redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="redis-test-")
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool | None:
        try:
            return redis.Redis.from_url(url, socket_timeout=1).ping() or None
        except redis.RedisError:
            return None

    try:
        if not wait_for_start(proc, answers, timeout=15):
            raise RuntimeError("redis-server did not start")
        yield url
    finally:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)
