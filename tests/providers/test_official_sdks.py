"""The official Python SDKs, pointed at the routes served on 127.0.0.1, the fakes behind them.

The SDKs are the clients the routes are for, so they are not simulated:
each one builds its own URLs, headers and bodies and parses the answers,
event by event for Anthropic's stream and chunk by chunk for ElevenLabs'
audio. The key each SDK is given (or not) never reaches the fake.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import anthropic
import pytest
from elevenlabs.client import ElevenLabs

from providers.provider_support import ANTHROPIC_KEY, ELEVENLABS_KEY

MODEL = "claude-test-1"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "PROVIDERS.md"
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def claude(served, fakes):
    client = anthropic.Anthropic(
        base_url=f"{served.url}/api/anthropic", api_key="placeholder", max_retries=0
    )
    yield client
    client.close()


@pytest.fixture
def eleven(served, fakes):
    return ElevenLabs(base_url=f"{served.url}/api/elevenlabs", api_key=None)


def test_messages_create(claude, fakes):
    fake, _ = fakes
    message = claude.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hello proxy"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "You said: hello proxy"
    assert message.stop_reason == "end_turn"
    (call,) = fake.calls
    assert call.headers["X-Api-Key"] == ANTHROPIC_KEY
    assert "placeholder" not in repr(call.headers)
    # The SDK's own version date travels unchanged: the proxy never pins one.
    assert call.headers["Anthropic-Version"] == claude.default_headers["anthropic-version"]
    assert not any(k.lower().startswith("x-stainless") for k in call.headers)


def test_messages_stream_event_by_event(claude, fakes):
    fake, _ = fakes
    types: list[str] = []
    arrivals: list[float] = []
    texts: list[str] = []
    with claude.messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "one two three four"}]
    ) as stream:
        for event in stream:
            arrivals.append(time.monotonic())
            types.append(event.type)
            if event.type == "text":
                texts.append(event.text)
        final = stream.get_final_message()
    raw = [t for t in types if t not in ("text",)]
    assert raw[0] == "message_start" and raw[-1] == "message_stop"
    assert raw.index("content_block_start") < raw.index("content_block_delta")
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert texts == fake.reply_words("one two three four")
    assert final.content[0].text == "You said: one two three four"
    assert final.stop_reason == "end_turn"
    # Events arrive as they are sent (10 ms apart), not all at once at the end.
    spread = arrivals[-1] - arrivals[0]
    assert spread >= 0.05, spread
    assert fake.calls[0].json()["stream"] is True


def test_a_tool_use_message(claude, fakes):
    message = claude.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Lisbon"}],
    )
    (block,) = message.content
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("get_weather", {"city": "Lisbon"})
    assert message.stop_reason == "tool_use"
    with claude.messages.stream(
        model=MODEL,
        max_tokens=128,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Porto"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"city": "Porto"}


def test_count_tokens(claude):
    counted = claude.messages.count_tokens(
        model=MODEL, messages=[{"role": "user", "content": "a b c"}]
    )
    assert counted.input_tokens > 0


def test_provider_errors_reach_the_sdk_as_its_own_exceptions(claude, fakes):
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(
            model="rate-limited", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        claude.messages.create(
            model="overloaded", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert overloaded.value.status_code == 529


def test_the_proxys_own_refusals_reach_the_sdk(claude):
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        claude.messages.batches.create(requests=[])
    assert refused.value.body == {
        "message": "This path is not allowed by the proxy.",
        "code": "path_not_allowed",
    }
    with pytest.raises(anthropic.APIStatusError) as wrong_method:
        claude.models.list()
    assert wrong_method.value.status_code == 405


def test_text_to_speech_bytes_are_identical(eleven, fakes):
    _, fake = fakes
    audio = b"".join(
        eleven.text_to_speech.convert(
            "voice-1", text="Hello from the proxy", model_id="eleven_multilingual_v2"
        )
    )
    assert audio == fake.sent[-1]
    (call,) = fake.calls
    assert call.path == "/v1/text-to-speech/voice-1"
    assert [v for k, v in call.headers.items() if k.lower() == "xi-api-key"] == [ELEVENLABS_KEY]


def test_text_to_speech_streams_chunk_by_chunk(eleven, fakes):
    _, fake = fakes
    chunks = list(eleven.text_to_speech.stream("voice-2", text="a much longer sentence " * 4))
    assert b"".join(chunks) == fake.sent[-1]
    assert len(chunks) > 3
    assert fake.calls[0].path == "/v1/text-to-speech/voice-2/stream"


def test_sound_effects(eleven, fakes):
    _, fake = fakes
    audio = b"".join(
        eleven.text_to_sound_effects.convert(text="rain on a tin roof", duration_seconds=0.5)
    )
    assert audio == fake.sent[-1] and audio[:4] == b"RIFF"
    assert fake.calls[0].json()["duration_seconds"] == 0.5


def test_an_unknown_voice_is_the_sdks_not_found(eleven):
    from elevenlabs.core.api_error import ApiError

    with pytest.raises(ApiError) as missing:
        b"".join(eleven.text_to_speech.convert("missing-voice", text="x"))
    assert missing.value.status_code == 404


def _documented_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    (block,) = [b for b in blocks if "anthropic.Anthropic(" in b]
    return block


def test_the_documented_python_example_runs_as_written(served, fakes, capsys):
    """docs/PROVIDERS.md's snippet, run as printed with only its PROXY line pointed here."""
    anthropic_fake, eleven_fake = fakes
    written = 'PROXY = "http://127.0.0.1:8000"'
    example = _documented_python_example()
    assert written in example
    namespace: dict = {}
    code = example.replace(written, f'PROXY = "{served.url}"', 1)
    exec(compile(code, str(DOCS), "exec"), namespace)
    namespace["claude"].close()

    assert capsys.readouterr().out == "You said: Name three kites.\nYou said: And three more."
    assert [c.path for c in anthropic_fake.calls] == ["/v1/messages", "/v1/messages"]
    for call in anthropic_fake.calls:
        assert call.headers["X-Api-Key"] == ANTHROPIC_KEY
        assert "placeholder" not in repr(call.headers)
    assert namespace["audio"] == eleven_fake.sent[-1] and namespace["audio"][:4] == b"RIFF"
    (speech,) = eleven_fake.calls
    assert speech.path == "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb/stream"
    assert [v for k, v in speech.headers.items() if k.lower() == "xi-api-key"] == [ELEVENLABS_KEY]
