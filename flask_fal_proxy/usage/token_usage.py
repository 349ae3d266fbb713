"""Token counts read from an Anthropic or OpenAI answer as it streams past.

The relay must not hold a stream back to count it (the SSE delay bar), so
the reader sees the same chunks the client gets, one at a time, and keeps
only what it needs: for an event stream, the current unfinished line, and
only lines that mention usage are parsed; for a JSON body, the body up to a
bound (answers are small), past it only its tail, where both providers put
``usage``. Nothing else of the body is kept or logged.

Anthropic streams ``usage`` in ``message_start`` (input) and
``message_delta`` (output so far, cumulative); OpenAI's chat completions
send it in a last chunk (``stream_options.include_usage``) and the
Responses API in ``response.completed``.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["TokenCount", "UsageReader"]

_MAX_LINE = 256 * 1024
_MAX_JSON = 512 * 1024
_TAIL = 16 * 1024
_USAGE_IN_TAIL = re.compile(rb'"usage"\s*:\s*(\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\})')


class TokenCount:
    __slots__ = ("model", "input", "output", "cache_write", "cache_read", "seen")

    def __init__(self, model: str) -> None:
        self.model = model
        self.input = 0
        self.output = 0
        self.cache_write = 0
        self.cache_read = 0
        self.seen = False

    def take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return

        def number(name: str) -> int | None:
            value = usage.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        prompt = number("input_tokens")
        if prompt is None:
            prompt = number("prompt_tokens")
        completion = number("output_tokens")
        if completion is None:
            completion = number("completion_tokens")
        if prompt is not None:
            self.input = prompt
        if completion is not None:
            self.output = completion
        write, read = number("cache_creation_input_tokens"), number("cache_read_input_tokens")
        if write is not None:
            self.cache_write = write
        if read is not None:
            self.cache_read = read
        self.seen = self.seen or prompt is not None or completion is not None


class UsageReader:
    """Feed it the answer's chunks; ``count`` holds the tokens found so far."""

    def __init__(self, model: str, content_type: str) -> None:
        self.count = TokenCount(model)
        self.stream = "event-stream" in content_type
        self._buffer = bytearray()
        self._skipping = False
        self._overflow = False

    def feed(self, data: bytes) -> None:
        if self.stream:
            self._feed_lines(data)
        elif self._overflow:
            self._buffer += data
            del self._buffer[:-_TAIL]
        else:
            self._buffer += data
            if len(self._buffer) > _MAX_JSON:
                self._overflow = True
                del self._buffer[:-_TAIL]

    def close(self) -> TokenCount:
        if self.stream:
            if self._buffer and not self._skipping:
                self._line(bytes(self._buffer))
        elif self._overflow:
            matches = list(_USAGE_IN_TAIL.finditer(self._buffer))
            if matches:
                match = matches[-1]
                try:
                    self.count.take(json.loads(match[1]))
                except ValueError:
                    pass
        elif self._buffer:
            try:
                self._event(json.loads(bytes(self._buffer)))
            except ValueError:
                pass
        self._buffer.clear()
        return self.count

    def _feed_lines(self, data: bytes) -> None:
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif self._buffer:
                self._buffer += data[start:end]
                self._line(bytes(self._buffer))
                self._buffer.clear()
            else:
                self._line(data[start:end])
            start = end + 1
        rest = data[start:]
        if rest and not self._skipping:
            self._buffer += rest
            if len(self._buffer) > _MAX_LINE:
                # A line this long carries content, not usage: drop it.
                self._buffer.clear()
                self._skipping = True

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:") or b'"usage"' not in line:
            return
        try:
            self._event(json.loads(line[5:]))
        except ValueError:
            return

    def _event(self, event: Any) -> None:
        if not isinstance(event, dict):
            return
        inner = event.get("message") or event.get("response")
        if isinstance(inner, dict):
            self._model(inner)
            self.count.take(inner.get("usage"))
        self._model(event)
        self.count.take(event.get("usage"))

    def _model(self, holder: dict[str, Any]) -> None:
        model = holder.get("model")
        if isinstance(model, str) and model:
            self.count.model = model[:200]
