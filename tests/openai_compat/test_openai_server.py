"""``python -m flask_fal_proxy.openai_compat``: the runnable server, under gunicorn."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator

import openai
import pytest
from e2e.harness import Server, clean_env

pytestmark = pytest.mark.e2e

READY = r"Listening at: http://127\.0\.0\.1:(\d+)"
COMMAND = [sys.executable, "-m", "flask_fal_proxy.openai_compat"]


def _env(**extra: str) -> dict[str, str]:
    env = clean_env(WEB_CONCURRENCY="1", **extra)
    for name in ("AI_KEYS", "CUSTOM_ACCESS_KEY", "SUPPORTED_MODELS", "PORT", "HOST", "DEBUG_MODE"):
        env.pop(name, None)
    env.update(extra)
    return env


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{url}/v1",
        api_key=key,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )


@pytest.fixture(scope="module")
def offline() -> Iterator[Server]:
    server = Server([*COMMAND, "--offline", "--port", "0"], _env(CUSTOM_ACCESS_KEY="try-it"), READY)
    try:
        yield server
    finally:
        server.stop()


def test_offline_serves_a_working_api_without_a_fal_key(offline: Server) -> None:
    api = _client(offline.url, "try-it")

    assert "flux-dev" in [m.id for m in api.models.list().data]
    result = api.images.generate(model="imagen4", prompt="a first try", size="1792x1024")
    assert result.data[0].url.startswith("data:image/png;base64,")
    b64 = api.images.generate(model="flux-dev", prompt="inline", response_format="b64_json")
    assert base64.b64decode(b64.data[0].b64_json).startswith(b"\x89PNG")
    with pytest.raises(openai.AuthenticationError):
        _client(offline.url, "wrong").models.list()
    assert "Using worker: gthread" in offline.output()


def test_without_fal_keys_it_refuses_to_start(tmp_path) -> None:
    done = subprocess.run(
        [*COMMAND, "--port", "0"],
        cwd=tmp_path,
        env=_env(CUSTOM_ACCESS_KEY="k", SUPPORTED_MODELS="a:fal-ai/flux/dev"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no fal keys" in done.stderr and "--offline" in done.stderr


def test_bad_settings_stop_it_before_any_worker(tmp_path) -> None:
    done = subprocess.run(
        [*COMMAND, "--port", "0"],
        cwd=tmp_path,
        env=_env(AI_KEYS="k", CUSTOM_ACCESS_KEY="k", SUPPORTED_MODELS="a:fal-ai/../x"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "dot segments" in done.stderr
    assert "Listening at" not in done.stdout + done.stderr


def test_it_reads_dotenv_and_prefers_gevent(tmp_path) -> None:
    (tmp_path / ".env").write_text(
        'CUSTOM_ACCESS_KEY="from-dotenv"\n'
        'AI_KEYS="fal-a,fal-b"\n'
        'SUPPORTED_MODELS="flux-dev:fal-ai/flux/dev,imagen:fal-ai/imagen4/preview"\n'
    )
    server = Server([*COMMAND, "--port", "0"], _env(), READY, cwd=tmp_path)
    try:
        api = _client(server.url, "from-dotenv")
        assert [m.id for m in api.models.list().data] == ["flux-dev", "imagen"]
        try:
            import gevent  # noqa: F401
        except ImportError:
            assert "Using worker: gthread" in server.output()
        else:
            assert "Using worker: gevent" in server.output()
            assert "MonkeyPatchWarning" not in server.output()
    finally:
        server.stop()
