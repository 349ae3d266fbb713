"""The admission path every face shares: the cross-origin rule, face-shaped routing
errors, header hygiene, escaped log lines and the observer seam."""

from __future__ import annotations

import flask
import pytest
from conftest import PROXY, TEST_KEY

from flask_fal_proxy import (
    allow_browser_origins,
    create_blueprint,
    create_openai_blueprint,
    create_provider_blueprint,
)
from flask_fal_proxy.admission import add_observer
from flask_fal_proxy.testing import OPENAI_MODELS, FakeAnthropic

RUN = {"x-fal-target-url": "https://fal.run/fal-ai/flux/dev"}
ANTHROPIC_KEY = "sk-ant-admission-5ecret"
ACCESS = "admission-access-5ecret"


@pytest.fixture(scope="module")
def anthropic():
    with FakeAnthropic(key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture
def app(fake, anthropic):
    anthropic.calls.clear()
    app = flask.Flask("admission")
    app.config["FAL_KEY"] = TEST_KEY
    app.config["ANTHROPIC_API_KEY"] = ANTHROPIC_KEY
    app.register_blueprint(create_blueprint(session=fake.session()))
    app.register_blueprint(create_provider_blueprint("anthropic", session=anthropic.session()))
    app.register_blueprint(
        create_openai_blueprint(
            models=OPENAI_MODELS,
            access_keys=[ACCESS],
            fal_keys=[TEST_KEY],
            session=fake.session(),
        )
    )
    return app


def _calls(app, method, path, headers, **kwargs):
    return app.test_client().open(path, method=method, headers=headers, **kwargs)


FACES = {
    "fal": ("POST", PROXY, RUN),
    "anthropic": ("POST", "/api/anthropic/v1/messages", {"anthropic-version": "2023-06-01"}),
    "openai": ("POST", "/v1/images/generations", {"Authorization": f"Bearer {ACCESS}"}),
}
BODY = {"prompt": "a kite", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
BODIES = {"fal": BODY, "anthropic": BODY, "openai": {"prompt": "a kite", "model": "flux-dev"}}


def _upstream_calls(fake, anthropic):
    return len(fake.calls) + len(anthropic.calls)


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize(
    ("browser", "refused"),
    [
        ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, True),
        ({"Sec-Fetch-Site": "same-site", "Origin": "https://sub.localhost"}, True),
        ({"Origin": "https://evil.example"}, True),
        ({"Origin": "null"}, True),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, False),
        ({"Sec-Fetch-Site": "none"}, False),
        ({"Origin": "http://localhost"}, False),
        ({}, False),
    ],
)
def test_a_page_of_another_origin_is_refused_before_anything_is_read(
    app, fake, anthropic, face, browser, refused
):
    method, path, headers = FACES[face]
    # A text/plain body (CORS-simple, no preflight) that no face accepts:
    # a refusal for its media type would mean the body step ran first.
    answer = _calls(
        app, method, path, {**headers, **browser, "Content-Type": "text/plain"}, data=b"x" * 100
    )
    if refused:
        assert answer.status_code == 403
        code = answer.json["error"]["code"] if face == "openai" else answer.json["code"]
        assert code == "cross_origin_refused"
    else:
        assert answer.status_code == 415
    assert _upstream_calls(fake, anthropic) == 0


@pytest.mark.parametrize("face", FACES)
def test_origins_trusted_on_one_face_are_trusted_on_every_face(app, fake, anthropic, face):
    pytest.importorskip("flask_cors")
    allow_browser_origins(app, ["https://studio.example"], ["/api/anthropic"])
    method, path, headers = FACES[face]
    browser = {"Sec-Fetch-Site": "cross-site", "Origin": "https://studio.example"}
    answer = _calls(app, method, path, {**headers, **browser}, json=BODIES[face])
    assert answer.status_code == 200, answer.data
    assert _upstream_calls(fake, anthropic) >= 1


def test_a_route_can_opt_out_of_the_cross_origin_rule(fake):
    app = flask.Flask("open")
    app.config["FAL_KEY"] = TEST_KEY
    app.register_blueprint(create_blueprint(session=fake.session(), cross_origin_protection=False))
    answer = _calls(app, "POST", PROXY, {**RUN, "Sec-Fetch-Site": "cross-site"}, json=BODY)
    assert answer.status_code == 200 and len(fake.calls) == 1


@pytest.mark.parametrize("face", ["fal", "anthropic"])
@pytest.mark.parametrize("value", ["a\x01b\x7f", "a\x00b", "x\x1b[31m"])
def test_a_forwarded_header_with_a_control_character_is_400(app, fake, anthropic, face, value):
    method, path, headers = FACES[face]
    answer = _calls(app, method, path, {**headers, "User-Agent": value}, json=BODY)
    assert answer.status_code == 400 and answer.json["code"] == "invalid_header"
    assert _upstream_calls(fake, anthropic) == 0


def test_the_facade_answers_unknown_paths_and_methods_in_openai_shape(app):
    client = app.test_client()
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    wrong = client.delete("/v1/models")
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS"
    # Paths outside every face keep Flask's own answer.
    assert client.get("/elsewhere").status_code == 404 and b"<" in client.get("/elsewhere").data


def test_a_provider_path_with_a_doubled_slash_is_400_never_a_redirect(app, anthropic):
    client = app.test_client()
    answer = client.post("/api/anthropic//evil.com/x", json=BODY)
    assert answer.status_code == 400 and answer.json["code"] == "invalid_path"
    assert "Location" not in answer.headers
    missing = client.post("/api/anthropic", json=BODY)
    assert missing.status_code == 404 and missing.json["code"] == "not_found"
    assert anthropic.calls == []


def test_client_text_in_log_lines_is_escaped(app, caplog):
    client = app.test_client()
    client.get("/v1/models/x%1b%5b31mRED%00")  # unauthenticated: 401
    client.post("/api/anthropic/v1/x%1b%5b31m", json=BODY)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("flask_fal_proxy")]
    assert any("\\x1b[31mRED\\x00" in line for line in lines), lines
    assert not any("\x1b" in line or "\x00" in line for line in lines)


class Recorder:
    def __init__(self):
        self.events = []

    def admit(self, call, request):
        self.events.append(("admit", call.face, call.endpoint))

    def response(self, call, method, url, status, headers):
        self.events.append(("response", method, url, status))

    def chunk(self, call, data):
        self.events.append(("chunk", len(data)))

    def finish(self, call):
        self.events.append(("finish", call.status, call.refusal, call.bytes_out > 0))


def test_observers_see_every_call_and_every_refusal_once(app, fake):
    recorder = Recorder()
    add_observer(app, recorder)
    client = app.test_client()
    answer = client.post(PROXY, headers=RUN, json={"prompt": "a kite"})
    assert answer.status_code == 200
    body = answer.get_data()
    answer.close()  # what the WSGI server does after the last byte
    events = recorder.events
    assert events[0] == ("admit", "fal_proxy", "fal-ai/flux/dev")
    assert events[1] == ("response", "POST", "https://fal.run/fal-ai/flux/dev", 200)
    assert sum(n for kind, n, *_ in events if kind == "chunk") == len(body)
    assert events[-1] == ("finish", 200, None, True)

    recorder.events.clear()
    client.post(PROXY, json={})  # no target URL: refused before admit
    client.patch(PROXY, headers=RUN)  # refused by routing
    assert recorder.events == [
        ("finish", 400, "missing_target_url", False),
        ("finish", 405, "method_not_allowed", False),
    ]


def test_an_observer_can_refuse_before_anything_is_sent(app, fake):
    from flask_fal_proxy import ProxyError

    class Budget(Recorder):
        def admit(self, call, request):
            raise ProxyError(
                402, "budget_exceeded", "The day's budget is spent.", {"x-should-retry": "false"}
            )

    recorder = Recorder()
    add_observer(app, Budget())
    add_observer(app, recorder)
    client = app.test_client()
    answer = client.post(PROXY, headers=RUN, json={"prompt": "a kite"})
    assert answer.status_code == 402 and answer.json["code"] == "budget_exceeded"
    assert answer.headers["x-should-retry"] == "false"
    quota = client.post("/v1/images/generations", headers=FACES["openai"][2], json=BODIES["openai"])
    assert quota.status_code == 429
    assert quota.json["error"]["type"] == quota.json["error"]["code"] == "insufficient_quota"
    # Only the facade's free schema fetch reached fal; no paid call did.
    assert [c.host for c in fake.calls] == ["fal.ai"]
    assert [e[:3] for e in recorder.events] == [
        ("finish", 402, "budget_exceeded"),
        ("finish", 429, "budget_exceeded"),
    ]
