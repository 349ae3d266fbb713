"""The example studio in headless chromium: image, text and speech panels, offline.

The app runs under gunicorn with the example's settings; the three fakes run
in this process so that what each received can be read. The screenshot
lands in ``artifacts/`` for a human to look at.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest
from e2e.harness import ARTIFACTS, clean_env, gunicorn

from flask_fal_proxy.testing import FakeAnthropic, FakeElevenLabs, FakeFal
from providers.test_browser_sdk import require_studio_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
ROOT = BROWSER_DIR.parents[2]
KEYS = {name: f"{name.lower()}-{secrets.token_hex(6)}" for name in ("FAL", "ANTHROPIC", "ELEVEN")}


def test_the_three_panels_work_through_their_routes():
    require_studio_page()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-studio.png"
    shot.unlink(missing_ok=True)
    with (
        FakeFal(key=KEYS["FAL"], stream_delay=0.05) as fal,
        FakeAnthropic(key=KEYS["ANTHROPIC"], stream_delay=0.03) as anthropic,
        FakeElevenLabs(key=KEYS["ELEVEN"], stream_delay=0.02) as elevenlabs,
    ):
        env = clean_env(
            FAL_KEY=fal.key,
            FAL_PROXY_FAKE_PORT=str(fal.port),
            ANTHROPIC_API_KEY=anthropic.key,
            ANTHROPIC_FAKE_PORT=str(anthropic.port),
            ELEVENLABS_API_KEY=elevenlabs.key,
            ELEVENLABS_FAKE_PORT=str(elevenlabs.port),
            SECRET_KEY="studio",
        )
        server = gunicorn("example_app.app:app", env)
        try:
            done = subprocess.run(
                ["node", str(BROWSER_DIR / "studio.mjs"), server.url, str(shot)],
                cwd=BROWSER_DIR,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            log = server.output()
        finally:
            server.stop()
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, done.stderr
    page = json.loads(lines[-1])
    assert page["pageErrors"] == [], page["pageErrors"]

    # Image: fal's queue position and logs were shown while waiting.
    assert page["imageState"] == "done", page
    assert any(s["text"].startswith("Queue position:") for s in page["queue"])
    assert any("generating" in s["text"] for s in page["logs"])
    assert page["imageSrc"].startswith("data:image/svg+xml")

    # Text: tokens appeared one by one as the fake streamed them.
    prompt = "tell me about kites"
    assert page["textState"] == "done", page
    assert page["text"] == "".join(anthropic.reply_words(prompt))
    grown = [s for s in page["text-out"] if s["text"]]
    assert len(grown) == len(anthropic.reply_words(prompt))
    assert grown[-1]["at"] - grown[0]["at"] >= 100  # 30 ms apart, not in one piece
    assert page["text-status"][0]["text"] == "Waiting for the first token…"

    # Speech: the audio arrived in chunks, then played.
    assert page["speechState"] == "playing", page
    assert page["speechChunks"] > 1
    assert page["audio"]["visible"] and page["audio"]["duration"] > 0
    assert any(s["text"].startswith("Receiving audio:") for s in page["speech-status"])

    # Keys: never in the page's requests, always in what each fake received.
    assert all(r["keyHeaders"] == [] for r in page["requests"])
    assert {r["url"].split("/")[2] for r in page["requests"]} == {server.url.split("/")[2]}
    assert all(c.headers["Authorization"] == f"Key {fal.key}" for c in fal.calls)
    (message,) = anthropic.calls
    assert message.headers["X-Api-Key"] == anthropic.key
    assert message.json()["stream"] is True
    (speech,) = elevenlabs.calls
    assert speech.headers["Xi-Api-Key"] == elevenlabs.key
    assert speech.path == "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream"
    assert speech.query == "output_format=mp3_44100_128"
    for key in KEYS.values():
        assert key not in log
    assert shot.stat().st_size > 10_000
