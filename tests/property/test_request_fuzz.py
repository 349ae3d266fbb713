"""Generated whole requests against every route: the answer is documented, JSON when refused.

Invariants, route by route: the status is one the route documents; a refusal
is JSON with ``message`` and ``code`` and nothing reached the upstream; an
accepted call reached it once, with the bytes the app received, the server's
key and none of the client's credentials; strict JSON passes and spoiled
JSON is 400 ``invalid_json``; no key appears in the answer (nor, through the
autouse fixture in tests/conftest.py, in any log line).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import flask
import pytest
from conftest import TEST_KEY
from hypothesis import event, given
from hypothesis import strategies as st
from requestfuzz import SPOILED, VALID, Answer, Body, Drawn, requests_for, run
from wire import WireRecorder, budget

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.openai_compat import create_openai_blueprint, jobs
from flask_fal_proxy.providers import create_provider_blueprint
from flask_fal_proxy.testing import FakeFal, loopback_session, openapi_document

CLIENT_CREDENTIALS = ("cookie", "proxy-authorization")


@dataclass(frozen=True)
class Route:
    """One route as a client sees it, and what its contract promises."""

    name: str
    path: str
    base_headers: tuple[tuple[str, str], ...]
    statuses: frozenset[int]
    key_header: str
    key_value: str
    methods: frozenset[str]  # the methods it forwards
    uploads: tuple[str, ...] = ()  # media types passed through unchecked
    make_blueprint: Callable[[flask.Flask, int], flask.Blueprint] | None = None

    def is_json_call(self, drawn: Drawn) -> bool:
        """A request whose body the route must judge as JSON, so the label decides."""
        target_headers = [n for n, _ in drawn.headers if n.lower() == "x-fal-target-url"]
        return (
            drawn.method.upper() in self.methods - {"GET", "HEAD"}
            and drawn.length in ("exact", "chunked")
            and bool(drawn.body.data)
            and (drawn.content_type or "").split(";")[0].strip().lower() == "application/json"
            and len(target_headers)
            == len([h for h in self.base_headers if h[0] == "x-fal-target-url"])
        )


def _fal(app: flask.Flask, port: int) -> flask.Blueprint:
    app.config["FAL_KEY"] = TEST_KEY
    return create_blueprint(session=loopback_session(port))


def _provider(name: str) -> Callable[[flask.Flask, int], flask.Blueprint]:
    def make(app: flask.Flask, port: int) -> flask.Blueprint:
        return create_provider_blueprint(name, api_key=TEST_KEY, session=loopback_session(port))

    return make


UPLOADS = ("multipart/form-data", "application/octet-stream")
ROUTES = [
    Route(
        "fal",
        "/api/fal/proxy",
        (("x-fal-target-url", "https://fal.run/fal-ai/flux/dev"),),
        frozenset({200, 400, 401, 403, 405, 412, 413, 415}),
        "authorization",
        f"Key {TEST_KEY}",
        frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"}),
        make_blueprint=_fal,
    ),
    Route(
        "anthropic",
        "/api/anthropic/v1/messages",
        (("anthropic-version", "2023-06-01"),),
        frozenset({200, 400, 405, 413, 415}),
        "x-api-key",
        TEST_KEY,
        frozenset({"POST"}),
        UPLOADS,
        make_blueprint=_provider("anthropic"),
    ),
    Route(
        "elevenlabs",
        "/api/elevenlabs/v1/text-to-speech/voice-1/stream",
        (("accept", "audio/mpeg"),),
        frozenset({200, 400, 405, 413, 415}),
        "xi-api-key",
        TEST_KEY,
        frozenset({"POST"}),
        UPLOADS,
        make_blueprint=_provider("elevenlabs"),
    ),
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[WireRecorder]:
    server = WireRecorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def apps(upstream: WireRecorder) -> dict[str, flask.Flask]:
    made = {}
    for route in ROUTES:
        app = flask.Flask(f"fuzzed-{route.name}")
        assert route.make_blueprint is not None
        app.register_blueprint(route.make_blueprint(app, upstream.port))
        made[route.name] = app
    return made


def _is_refusal(answer: Answer, method: str) -> bool:
    if method == "HEAD":  # the same refusal, without its body
        return answer.headers.get("content-type") == "application/json" and not answer.body
    body = answer.json()
    return (
        answer.headers.get("content-type", "").startswith("application/json")
        and isinstance(body.get("message"), str)
        and isinstance(body.get("code"), str)
    )


def _media_type(drawn: Drawn) -> str:
    return (drawn.content_type or "").split(";")[0].strip().lower()


@budget(300)
@given(data=st.data())
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_generated_request_is_answered_as_documented(apps, upstream, route, data):
    drawn = data.draw(requests_for(list(route.base_headers)))
    upstream.take_all()
    answer = run(apps[route.name], route.path, drawn)
    forwarded = upstream.take_all()
    event(f"{drawn.method} {drawn.body.why} -> {answer.status}")

    assert TEST_KEY.encode() not in answer.body
    assert all(TEST_KEY not in v for v in answer.headers.values())
    # Werkzeug reads the method upper-cased, as the route then sends it.
    method = drawn.method.upper()
    if method == "OPTIONS":
        assert answer.status == 200 and not forwarded
        return
    if answer.status == 403 and (method == "HEAD" or _code(answer) == "cross_origin_refused"):
        # The cross-origin rule: only a request that names another origin.
        assert not forwarded and (_names_an_origin(drawn) or route.name == "fal"), drawn.headers
        return
    assert answer.status in route.statuses, (answer.status, answer.body[:300])
    if not forwarded:
        assert answer.status >= 400 and _is_refusal(answer, method), answer.body[:300]
        if route.is_json_call(drawn) and drawn.body.kind == VALID:
            assert answer.json()["code"] != "invalid_json", answer.body
        if route.is_json_call(drawn) and drawn.body.kind == SPOILED:
            assert answer.json()["code"] == "invalid_json", answer.body
        return

    assert len(forwarded) == 1 and answer.status == 200
    sent = forwarded[0]
    assert sent.request_line.split(" ")[0] == method
    assert method in route.methods
    assert sent.headers[route.key_header] == route.key_value
    assert not any(name in sent.headers for name in CLIENT_CREDENTIALS)
    other_keys = {"authorization", "x-api-key", "xi-api-key"} - {route.key_header}
    assert not any(name in sent.headers for name in other_keys)
    assert not (route.is_json_call(drawn) and drawn.body.kind == SPOILED), drawn.body.why
    if method in ("GET", "HEAD"):
        assert sent.body == b""
    else:
        assert sent.body == drawn.received
        if drawn.received and route.uploads and _media_type(drawn) != "application/json":
            assert _media_type(drawn) in route.uploads


def _code(answer) -> str:
    payload = answer.json()
    return payload["error"]["code"] if "error" in payload else payload["code"]


def _names_an_origin(drawn) -> bool:
    return any(name.lower() in ("origin", "sec-fetch-site") for name, _ in drawn.headers)


# The OpenAI facade translates instead of relaying: its oracle is the shape of
# its answers and whether anything was submitted to fal's queue.
ACCESS = "fuzz-access-5ecret"
OPENAI_STATUSES = frozenset({200, 400, 401, 404, 405, 411, 413, 415, 429, 502, 504})
openai_fields = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.one_of(st.text(max_size=30), st.sampled_from(["a cat", "[fail] x"])),
        "model": st.sampled_from(["flux-dev", "nope", "", None, 3]),
        "n": st.one_of(st.integers(-2, 12), st.sampled_from([1.5, "2", None, 10**40])),
        "size": st.one_of(
            st.sampled_from(["1024x1024", "1792x1024", "auto", "0x0", "99999x2", "x", "12"]),
            st.text(max_size=10),
        ),
        "response_format": st.sampled_from(["url", "b64_json", "svg", None]),
        "output_format": st.sampled_from(["png", "jpeg", "tiff"]),
        "quality": st.sampled_from(["hd", "standard"]),
        "guidance_scale": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.text()),
        "unknown_key": st.integers(),
    },
)


@st.composite
def openai_bodies(draw: st.DrawFn) -> Body:
    fields = draw(openai_fields)
    return Body(json.dumps(fields).encode(), VALID, "openai fields")


@pytest.fixture(scope="module")
def openai_app() -> Iterator[tuple[flask.Flask, FakeFal]]:
    with FakeFal(key=TEST_KEY, media_urls=True, stream_delay=0.0) as fake:
        first_poll, jobs.FIRST_POLL = jobs.FIRST_POLL, 0.002
        app = flask.Flask("fuzzed-openai")
        app.register_blueprint(
            create_openai_blueprint(
                models={"flux-dev": "fal-ai/flux/dev"},
                access_keys=[ACCESS],
                fal_keys=[TEST_KEY],
                session=fake.session(),
                schemas={"fal-ai/flux/dev": openapi_document("fal-ai/flux/dev")},
                generation_timeout=5,
            )
        )
        yield app, fake
        jobs.FIRST_POLL = first_poll


OPENAI_PATHS = [
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/models",
    "/v1/models/flux-dev",
    "/health",
]


@budget(200)
@given(data=st.data())
@pytest.mark.parametrize("path", OPENAI_PATHS)
def test_the_openai_facade_answers_every_generated_request_in_its_shape(openai_app, path, data):
    app, fake = openai_app
    auth = data.draw(st.sampled_from([f"Bearer {ACCESS}"] * 4 + ["Bearer wrong", "Basic x", ""]))
    drawn = data.draw(requests_for([("Authorization", auth)] if auth else []))
    if data.draw(st.booleans()):
        drawn.body = data.draw(openai_bodies())
    fake.calls.clear()
    answer = run(app, path, drawn)
    submitted = [c for c in fake.calls if c.method == "POST" and c.host == "queue.fal.run"]
    event(f"{drawn.method} {drawn.body.why} -> {answer.status}")

    assert TEST_KEY.encode() not in answer.body and ACCESS.encode() not in answer.body
    method = drawn.method.upper()
    if method == "OPTIONS":
        assert answer.status == 200 and not submitted
        return
    if answer.status == 403:
        assert not submitted and _names_an_origin(drawn), drawn.headers
        assert method == "HEAD" or _code(answer) == "cross_origin_refused", answer.body
        return
    assert answer.status in OPENAI_STATUSES, (answer.status, answer.body[:300])
    if method == "HEAD" or answer.status == 405:
        assert not submitted
        return
    payload = answer.json()
    if answer.status == 200:
        if path == "/v1/images/generations":
            assert submitted and isinstance(payload["data"], list) and payload["data"]
        else:
            assert not submitted and isinstance(payload, dict)
        return
    error = payload["error"]
    assert isinstance(error["message"], str) and isinstance(error["type"], str), payload
    assert "[object Object]" not in error["message"]
    if answer.status < 500 and answer.status != 429:
        assert not submitted, (answer.status, payload)
    else:
        assert answer.headers.get("x-should-retry") == "false" or not submitted
    json_call = (
        path == "/v1/images/generations"
        and method == "POST"
        and [v for n, v in drawn.headers if n.lower() == "authorization"] == [f"Bearer {ACCESS}"]
        and drawn.length in ("exact", "chunked")
        and bool(drawn.body.data)
        and (drawn.content_type or "").split(";")[0].strip().lower() == "application/json"
    )
    if json_call and drawn.body.kind == SPOILED:
        assert error.get("code") == "invalid_json", payload
    if json_call and drawn.body.kind == VALID:
        assert error.get("code") != "invalid_json", payload
