"""An offline stand-in for Anthropic's Messages API.

``FakeAnthropic`` answers ``/v1/messages`` as JSON or as server-sent events
in the order the real API sends them (``message_start``,
``content_block_start``, ``ping``, ``content_block_delta``...,
``content_block_stop``, ``message_delta``, ``message_stop``), with one
event per write and ``stream_delay`` between them, so a proxy that buffers
shows up as events arriving together. The reply echoes the last user text
word by word; with ``tools`` the first tool is called instead. Errors come
in Anthropic's shape: a wrong ``x-api-key`` is a 401, a model whose name
contains ``rate-limited`` a 429 with ``retry-after``, ``overloaded`` a 529.
Every answer carries what the real API adds around it: a ``request-id``,
the key's ``anthropic-organization-id`` (``organization_id``), its
``anthropic-ratelimit-*`` budget and the ``via``/``cf-ray`` of the edge in
front of it, so a proxy's response-header policy is tested against them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from werkzeug.wrappers import Request, Response

from .fake_server import DEFAULT_MAX_CALLS, FakeServer, json_response, keep_last

__all__ = ["FakeAnthropic"]


def _error(status: int, kind: str, message: str, **headers: str) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return json_response(body, status, **headers)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                texts = [b.get("text", "") for b in content if isinstance(b, dict)]
                return " ".join(t for t in texts if t)
    return ""


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


class FakeAnthropic(FakeServer):
    """Anthropic on loopback; ``calls`` holds what it received, ``key`` what it expects."""

    thread_name = "fake-anthropic"
    # The newest events kept in ``event_log``.
    event_log_limit = 10_000

    def __init__(
        self,
        key: str = "fake-anthropic-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stream_delay: float = 0.02,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        super().__init__(key, host=host, port=port, max_calls=max_calls)
        self.stream_delay = stream_delay
        self.organization_id = str(uuid.uuid4())
        # (event name, time.monotonic()) as each event is handed to the
        # server: with the client in the same process, the difference to its
        # arrival is what the path between them (a proxy) adds.
        self.event_log: list[tuple[str, float]] = []

    def reply_words(self, text: str) -> list[str]:
        """The text deltas the fake streams for a user message ``text``."""
        return _words(f"You said: {text}")

    def dispatch(self, request: Request, body: bytes) -> Response:
        response = self._answer(request, body)
        response.headers.setdefault("request-id", f"req_{uuid.uuid4().hex[:24]}")
        response.headers["anthropic-organization-id"] = self.organization_id
        response.headers["anthropic-ratelimit-requests-limit"] = "50"
        response.headers["anthropic-ratelimit-requests-remaining"] = "49"
        response.headers["via"] = "1.1 google"
        response.headers["cf-ray"] = f"{uuid.uuid4().hex[:16]}-AMS"
        return response

    def _answer(self, request: Request, body: bytes) -> Response:
        if request.headers.get("x-api-key") != self.key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if request.method != "POST":
            return _error(405, "invalid_request_error", "Method not allowed")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "invalid_request_error", "The request body is not valid JSON")
        if not isinstance(payload, dict):
            return _error(400, "invalid_request_error", "The request body must be an object")
        model = str(payload.get("model", ""))
        if "rate-limited" in model:
            return _error(
                429, "rate_limit_error", "Number of requests exceeded", **{"retry-after": "7"}
            )
        if "overloaded" in model:
            return _error(529, "overloaded_error", "Overloaded")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "invalid_request_error", "messages: field required")
        if request.path == "/v1/messages/count_tokens":
            words = sum(len(json.dumps(m).split()) for m in messages)
            return json_response({"input_tokens": words})
        if request.path != "/v1/messages":
            return _error(404, "not_found_error", "Not found")
        if not isinstance(payload.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: field required")
        message = self._message(model, messages, payload.get("tools"))
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}"}
        if payload.get("stream") is True:
            events = self._events(message)
            return Response(events, mimetype="text/event-stream", headers=headers)
        return json_response(message, **headers)

    def _message(self, model: str, messages: list[Any], tools: Any) -> dict[str, Any]:
        text = _last_user_text(messages)
        usage = {"input_tokens": max(1, len(text.split())), "output_tokens": 0}
        if isinstance(tools, list) and tools and isinstance(tools[0], dict):
            tool = tools[0]
            schema = tool.get("input_schema") or {}
            required = schema.get("required") or list(schema.get("properties") or {})[:1]
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": tool.get("name", "tool"),
                "input": {name: text for name in required},
            }
            stop = "tool_use"
        else:
            block = {"type": "text", "text": "".join(self.reply_words(text))}
            stop = "end_turn"
        usage["output_tokens"] = len(json.dumps(block).split())
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [block],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def _events(self, message: dict[str, Any]) -> Iterator[bytes]:
        block = message["content"][0]
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {**message["usage"], "output_tokens": 1}
        if block["type"] == "text":
            opened = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": w} for w in _words(block["text"])]
        else:
            opened = {**block, "input": {}}
            encoded = json.dumps(block["input"])
            pieces = [encoded[i : i + 8] for i in range(0, len(encoded), 8)]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        sequence: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": opened},
            ),
            ("ping", {"type": "ping"}),
            *(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
                for d in deltas
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": message["usage"]["output_tokens"]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for index, (name, data) in enumerate(sequence):
            if index:
                time.sleep(self.stream_delay)
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            with self._lock:
                self.event_log.append((name, time.monotonic()))
                keep_last(self.event_log, self.event_log_limit)
            yield chunk
