"""Generated whole requests against every route: the answer is documented, JSON when refused.

Invariants, route by route: the status is one the route documents; a refusal
is JSON with ``message`` and ``code`` and nothing reached the upstream; an
accepted call reached it once, with the bytes the app received and none of
the client's credentials; strict JSON passes and spoiled JSON is 400
``invalid_json``; no key appears in the answer (nor, through the autouse
fixture in tests/conftest.py, in any log line).
"""

from __future__ import annotations

from collections.abc import Iterator

import flask
import pytest
from conftest import TEST_KEY
from hypothesis import event, given
from requestfuzz import SPOILED, VALID, Answer, Drawn, requests_for, run
from wire import WireRecorder, budget

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.testing import loopback_session

FAL_TARGET = [("x-fal-target-url", "https://fal.run/fal-ai/flux/dev")]
FAL_STATUSES = {200, 400, 401, 403, 405, 412, 413, 415}
CLIENT_CREDENTIALS = ("cookie", "x-api-key", "xi-api-key", "proxy-authorization")


@pytest.fixture(scope="module")
def upstream() -> Iterator[WireRecorder]:
    server = WireRecorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def fal_app(upstream: WireRecorder) -> flask.Flask:
    app = flask.Flask("fuzzed-fal-route")
    app.config["FAL_KEY"] = TEST_KEY
    app.register_blueprint(create_blueprint(session=loopback_session(upstream.port)))
    return app


def _is_refusal(answer: Answer, method: str) -> bool:
    if method == "HEAD":  # the same refusal, without its body
        return answer.headers.get("content-type") == "application/json" and not answer.body
    body = answer.json()
    return (
        answer.headers.get("content-type", "").startswith("application/json")
        and isinstance(body.get("message"), str)
        and isinstance(body.get("code"), str)
    )


def _json_call(drawn: Drawn) -> bool:
    """A request whose body the fal route must judge as JSON, so the label decides."""
    return (
        drawn.method.upper() in ("POST", "PUT", "DELETE")
        and drawn.length in ("exact", "chunked")
        and bool(drawn.body.data)
        and (drawn.content_type or "").split(";")[0].strip().lower() == "application/json"
        and sum(1 for n, _ in drawn.headers if n.lower() == "x-fal-target-url") == 1
    )


@budget(400)
@given(drawn=requests_for(FAL_TARGET))
def test_fal_route_answers_every_generated_request_as_documented(fal_app, upstream, drawn):
    upstream.take_all()
    answer = run(fal_app, "/api/fal/proxy", drawn)
    forwarded = upstream.take_all()
    event(f"{drawn.method} {drawn.body.why} -> {answer.status}")

    assert TEST_KEY.encode() not in answer.body
    assert all(TEST_KEY not in v for v in answer.headers.values())
    # Werkzeug reads the method upper-cased, as the route then sends it.
    method = drawn.method.upper()
    if method == "OPTIONS":
        assert answer.status == 200 and not forwarded
        return
    assert answer.status in FAL_STATUSES, (answer.status, answer.body[:300])
    if not forwarded:
        assert answer.status >= 400 and _is_refusal(answer, method), (
            answer.status,
            answer.body[:300],
        )
        if _json_call(drawn) and drawn.body.kind == VALID:
            pytest.fail(f"strict JSON refused: {answer.body[:300]!r}")
        if _json_call(drawn) and drawn.body.kind == SPOILED:
            assert answer.json()["code"] == "invalid_json", answer.body
        return

    assert len(forwarded) == 1 and answer.status == 200
    sent = forwarded[0]
    assert sent.headers["authorization"] == f"Key {TEST_KEY}"
    assert not any(name in sent.headers for name in CLIENT_CREDENTIALS)
    assert _json_call(drawn) is False or drawn.body.kind != SPOILED, drawn.body.why
    assert sent.request_line.split(" ")[0] == ("GET" if method == "HEAD" else method) or (
        method == "HEAD" and sent.request_line.startswith("HEAD ")
    )
    if method in ("GET", "HEAD"):
        assert sent.body == b""
    else:
        assert sent.body == drawn.received
