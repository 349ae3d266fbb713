"""Whole generated requests for every route the package registers, and their oracle.

A request is drawn from the parts a hostile client plays with (method,
header names in any case, duplicates, long and non-ASCII values, content
types, declared lengths that disagree with the body, chunked bodies) and a
body that is labelled as it is made: strict JSON, or JSON spoiled in one
known way (non-standard constants, deep nesting, truncated UTF-8, a byte
order mark, a lone surrogate, a cut-off text), or raw bytes. The label is the
oracle for the JSON check, so the test does not ask the code under test
what it thinks JSON is.

Each request is run through the app's WSGI callable with an environ built
here, because a test client would repair the very disagreements (length,
chunking) being tested; the upstream is ``wire.WireRecorder``, a real
server on 127.0.0.1 that records the bytes it receives.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder, run_wsgi_app

VALID = "valid"
SPOILED = "spoiled"
UNKNOWN = "unknown"


@dataclass
class Body:
    data: bytes
    kind: str  # VALID, SPOILED (never strict JSON) or UNKNOWN
    why: str


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _spoil(draw: st.DrawFn, valid: bytes) -> Body:
    how = draw(
        st.sampled_from(
            ["nan", "infinity", "deep", "truncated-utf8", "bom", "surrogate", "cut", "trailing"]
        )
    )
    if how in ("nan", "infinity"):
        constant = draw(st.sampled_from(["NaN"] if how == "nan" else ["Infinity", "-Infinity"]))
        return Body(b'{"x": [1, %s]}' % constant.encode(), SPOILED, how)
    if how == "deep":
        depth = draw(st.integers(513, 200_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return Body(opener * depth + b"1" + closer * depth, SPOILED, f"{how} {depth}")
    if how == "truncated-utf8":
        return Body(b'{"prompt": "caf\xc3"}', SPOILED, how)
    if how == "bom":
        return Body(b"\xef\xbb\xbf" + valid, SPOILED, how)
    if how == "surrogate":
        # A raw lone surrogate is not UTF-8; the escaped form "\ud800" is JSON.
        return Body(b'{"s": "\xed\xa0\x80"}', SPOILED, how)
    if how == "trailing":
        return Body(valid + b" x", SPOILED, how)
    if len(valid) < 2:
        return Body(b'{"a":', SPOILED, how)
    return Body(valid[: draw(st.integers(1, len(valid) - 1))], UNKNOWN, "cut")


@st.composite
def bodies(draw: st.DrawFn) -> Body:
    roll = draw(st.integers(0, 9))
    value = draw(json_values)
    valid = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=False).encode()
    if roll <= 3:
        return Body(valid, VALID, "valid")
    if roll == 4:
        digits = draw(st.integers(400, 50_000))
        return Body(b'{"n": 1%s, "e": 1e99999}' % (b"0" * digits), VALID, "huge numbers")
    if roll == 5:
        return Body(b'{"s": "\\ud800\\udfff\\ud800"}', VALID, "escaped surrogates")
    if roll == 6:
        return Body(draw(st.binary(max_size=64)), UNKNOWN, "bytes")
    return _spoil(draw, valid)


CONTENT_TYPES = [
    "application/json",
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "",
    None,
]
METHODS = ["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "get", "X"]
LENGTHS = ["exact"] * 5 + ["chunked", "longer", "shorter", "none"]
NOISE_NAMES = [
    "X-Custom",
    "cookie",
    "Cookie",
    "authorization",
    "AUTHORIZATION",
    "x-api-key",
    "xi-api-key",
    "Connection",
    "TE",
    "Upgrade",
    "Accept",
    "User-Agent",
    "Origin",
    "Proxy-Authorization",
]
NOISE_VALUES = st.one_of(
    st.sampled_from(["a", "keep-alive, x-custom", "close", "x" * 9000, "\u00e9t\u00e9", "1, 2"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30),
)


@dataclass
class Drawn:
    method: str
    headers: list[tuple[str, str]]
    content_type: str | None
    body: Body
    length: str

    @property
    def received(self) -> bytes:
        """The body the server hands to the app, as the WSGI environ says it."""
        if self.length == "shorter" and self.body.data:
            return self.body.data[:-1]
        if self.length == "none":
            return b""
        return self.body.data


@st.composite
def requests_for(draw: st.DrawFn, base_headers: list[tuple[str, str]]) -> Drawn:
    headers = list(base_headers)
    for _ in range(draw(st.integers(0, 3))):
        headers.append((draw(st.sampled_from(NOISE_NAMES)), draw(NOISE_VALUES)))
    if headers and draw(st.integers(0, 5)) == 0:
        name, value = headers[0]
        headers[0] = (name.upper() if draw(st.booleans()) else name.title(), value)
    if base_headers and draw(st.integers(0, 12)) == 0:
        headers.append(base_headers[0])
    return Drawn(
        method=draw(st.sampled_from(METHODS)),
        headers=headers,
        content_type=draw(st.sampled_from(CONTENT_TYPES)),
        body=draw(bodies()),
        length=draw(st.sampled_from(LENGTHS)),
    )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def run(app: Callable[..., Any], path: str, drawn: Drawn) -> Answer:
    builder = EnvironBuilder(path=path, method=drawn.method)
    environ = builder.get_environ()
    environ["REQUEST_METHOD"] = drawn.method  # the builder would upper-case it
    environ["RAW_URI"] = path  # as gunicorn gives it
    for name, value in drawn.headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    if drawn.content_type is not None:
        environ["CONTENT_TYPE"] = drawn.content_type
    data = drawn.body.data
    environ["wsgi.input"] = io.BytesIO(data)
    if drawn.length == "exact":
        environ["CONTENT_LENGTH"] = str(len(data))
    elif drawn.length == "longer":
        environ["CONTENT_LENGTH"] = str(len(data) + 5)
    elif drawn.length == "shorter":
        environ["CONTENT_LENGTH"] = str(max(len(data) - 1, 0))
    elif drawn.length == "chunked":
        environ.pop("CONTENT_LENGTH", None)
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    else:
        environ.pop("CONTENT_LENGTH", None)
    app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
    body = b"".join(app_iter)
    return Answer(int(status.split()[0]), {k.lower(): v for k, v in headers.items()}, body)
