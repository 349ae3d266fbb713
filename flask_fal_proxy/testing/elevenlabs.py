"""An offline stand-in for ElevenLabs' speech and sound-effect endpoints.

``FakeElevenLabs`` answers ``/v1/text-to-speech/{voice_id}``, its
``/stream`` variant and ``/v1/sound-generation`` with audio derived from
the text: a short WAV tone (16-bit mono, 8 kHz) whatever ``output_format``
asks, because a browser can play it and no MP3 encoder is needed. The audio
is written in ``chunk_size`` pieces with ``stream_delay`` between them, so a
proxy that buffers shows up. A wrong ``xi-api-key`` is a 401 in ElevenLabs'
``detail`` shape; the voice id ``missing-voice`` a 404.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
from collections.abc import Iterator

from werkzeug.wrappers import Request, Response

from .fake_server import DEFAULT_MAX_CALLS, FakeServer, json_response, keep_last

__all__ = ["FakeElevenLabs", "audio_for"]

_RATE = 8000


def audio_for(text: str, seconds: float | None = None) -> bytes:
    """The WAV the fake answers for ``text``: the same text, the same bytes."""
    digest = hashlib.sha256(text.encode()).digest()
    frequency = 220 + digest[0] * 2
    duration = seconds if seconds is not None else min(3.0, 0.4 + 0.08 * len(text.split()))
    count = int(_RATE * max(0.1, min(duration, 10.0)))
    samples = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * frequency * i / _RATE)))
        for i in range(count)
    )
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, _RATE, _RATE * 2, 2, 16)
    return header + b"data" + struct.pack("<I", len(samples)) + samples


def _detail(status: int, kind: str, message: str) -> Response:
    return json_response({"detail": {"status": kind, "message": message}}, status)


class FakeElevenLabs(FakeServer):
    """ElevenLabs on loopback; ``sent`` holds the audio of the last ``max_calls`` answers."""

    thread_name = "fake-elevenlabs"

    def __init__(
        self,
        key: str = "fake-elevenlabs-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stream_delay: float = 0.01,
        chunk_size: int = 4096,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        super().__init__(key, host=host, port=port, max_calls=max_calls)
        self.stream_delay = stream_delay
        self.chunk_size = chunk_size
        self.sent: list[bytes] = []

    def dispatch(self, request: Request, body: bytes) -> Response:
        if request.headers.get("xi-api-key") != self.key:
            return _detail(401, "invalid_api_key", "Invalid API key")
        if request.method != "POST":
            return _detail(405, "method_not_allowed", "Method not allowed")
        try:
            payload = json.loads(body)
        except ValueError:
            return _detail(400, "invalid_json", "The request body is not valid JSON")
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            return _detail(422, "invalid_text", "text: field required")
        parts = request.path.strip("/").split("/")
        if parts == ["v1", "sound-generation"]:
            seconds = payload.get("duration_seconds")
            audio = audio_for(text, float(seconds) if isinstance(seconds, (int, float)) else None)
        elif parts[:2] == ["v1", "text-to-speech"] and len(parts) in (3, 4):
            if len(parts) == 4 and parts[3] != "stream":
                return _detail(404, "not_found", "Not found")
            if parts[2] == "missing-voice":
                return _detail(404, "voice_not_found", "A voice with that id was not found.")
            audio = audio_for(text)
        else:
            return _detail(404, "not_found", "Not found")
        with self._lock:
            self.sent.append(audio)
            keep_last(self.sent, self.max_calls)
        return Response(
            self._chunks(audio),
            mimetype="audio/wav",
            headers={"request-id": hashlib.sha1(audio).hexdigest()[:20]},
        )

    def _chunks(self, audio: bytes) -> Iterator[bytes]:
        for start in range(0, len(audio), self.chunk_size):
            if start:
                time.sleep(self.stream_delay)
            yield audio[start : start + self.chunk_size]
