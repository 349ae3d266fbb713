"""``python -m flask_fal_proxy.openai_compat``: the runnable server, under gunicorn."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from e2e.harness import Server, clean_env

pytestmark = pytest.mark.e2e

READY = r"Listening at: http://127\.0\.0\.1:(\d+)"
COMMAND = [sys.executable, "-m", "flask_fal_proxy.openai_compat"]
ENTRY_POINT = [str(Path(sys.executable).parent / "fal-openai-proxy")]
INSTALL_HINT = "pip install 'flask-fal-proxy[openai]'"


def _env(**extra: str) -> dict[str, str]:
    env = clean_env(WEB_CONCURRENCY="1")
    for name in ("AI_KEYS", "CUSTOM_ACCESS_KEY", "SUPPORTED_MODELS", "PORT", "HOST", "DEBUG_MODE"):
        env.pop(name, None)
    env.update(extra)
    return env


def _client(url: str, key: str, timeout: float = 60.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{url}/v1",
        api_key=key,
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )


def _without(tmp_path: Path, package: str) -> str:
    """A PYTHONPATH on which importing ``package`` fails as if it were not installed."""
    shadow = tmp_path / "shadow" / package
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{package}'\", name='{package}')\n"
    )
    return str(shadow.parent)


def _refusal(argv: list[str], cwd: Path, **env: str) -> str:
    """Run a start that must be refused; its stderr, which must be one line."""
    done = subprocess.run(
        argv, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Listening at" not in done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("fal-openai-proxy: ")
    return line


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
    assert "Using worker: gevent" in offline.output()
    assert "MonkeyPatchWarning" not in offline.output()


def test_offline_keeps_answering_while_uploads_stall(offline: Server) -> None:
    """40 uploads that stop sending froze the gthread server (16 threads per worker)."""
    stalled = []
    try:
        for _ in range(40):
            sock = socket.create_connection(("127.0.0.1", offline.port), timeout=5)
            sock.sendall(
                b"POST /v1/images/edits HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer try-it\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 1000000\r\n\r\n--b\r\n"
            )
            stalled.append(sock)
        time.sleep(0.5)
        api = _client(offline.url, "try-it", timeout=10)
        started = time.monotonic()
        assert "flux-dev" in [m.id for m in api.models.list().data]
        result = api.images.generate(model="flux-dev", prompt="while others stall")
        assert result.data[0].url.startswith("data:image/png;base64,")
        assert time.monotonic() - started < 5
    finally:
        for sock in stalled:
            sock.close()


def test_without_gevent_it_says_so_once_and_serves_with_gthread(tmp_path: Path) -> None:
    env = _env(CUSTOM_ACCESS_KEY="k", PYTHONPATH=_without(tmp_path, "gevent"))
    server = Server([*COMMAND, "--offline", "--port", "0"], env, READY, cwd=tmp_path)
    try:
        assert [m.id for m in _client(server.url, "k").models.list().data]
        output = server.output()
    finally:
        server.stop()
    assert "Using worker: gthread" in output
    (line,) = [text for text in output.splitlines() if "gevent is not installed" in text]
    assert line.startswith("fal-openai-proxy: ") and INSTALL_HINT in line


def test_without_gunicorn_the_entry_point_says_what_to_install(tmp_path: Path) -> None:
    line = _refusal(
        [*ENTRY_POINT, "--offline", "--port", "0"],
        tmp_path,
        PYTHONPATH=_without(tmp_path, "gunicorn"),
    )
    assert "gunicorn is not installed" in line and INSTALL_HINT in line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "abc"),
        ("PORT", "70000"),
        ("WEB_CONCURRENCY", "abc"),
        ("WEB_CONCURRENCY", "0"),
        ("GUNICORN_THREADS", "many"),
    ],
)
def test_a_bad_number_in_the_environment_is_one_line(tmp_path: Path, name, value) -> None:
    line = _refusal([*ENTRY_POINT, "--offline"], tmp_path, **{name: value})
    assert f"{name}={value!r}" in line and "whole number" in line


def test_a_bad_number_in_dotenv_is_one_line_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=eighty\n")
    line = _refusal([*COMMAND, "--offline"], tmp_path)
    assert "PORT='eighty'" in line


def test_dotenv_is_read_from_the_working_directory_only(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        'CUSTOM_ACCESS_KEY="parent"\nAI_KEYS="fal-a"\nSUPPORTED_MODELS="a:fal-ai/flux/dev"\n'
    )
    below = tmp_path / "project"
    below.mkdir()
    line = _refusal([*COMMAND, "--port", "0"], below)
    assert "no fal keys" in line


def test_without_fal_keys_it_refuses_to_start(tmp_path) -> None:
    line = _refusal(
        [*COMMAND, "--port", "0"],
        tmp_path,
        CUSTOM_ACCESS_KEY="k",
        SUPPORTED_MODELS="a:fal-ai/flux/dev",
    )
    assert "no fal keys" in line and "--offline" in line


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
