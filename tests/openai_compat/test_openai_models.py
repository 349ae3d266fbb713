"""GET /v1/models, /health, access keys, configuration at creation, and model schemas."""

from __future__ import annotations

import threading

import flask
import openai
import pytest
import requests

from flask_fal_proxy.openai_compat import create_openai_blueprint
from flask_fal_proxy.testing import FakeFal, openapi_document
from openai_compat.openai_support import ACCESS_KEY, FAL_KEY, MODELS, submits


def test_models_are_listed_and_retrieved_like_openais(api: openai.OpenAI) -> None:
    listed = api.models.list()

    assert [m.id for m in listed.data] == list(MODELS)
    assert {m.owned_by for m in listed.data} == {"fal-ai"}
    assert all(m.object == "model" for m in listed.data)
    flux = api.models.retrieve("flux-dev")
    assert flux.id == "flux-dev" and flux.created == listed.data[0].created
    with pytest.raises(openai.NotFoundError) as caught:
        api.models.retrieve("gpt-image-1")
    assert caught.value.code == "model_not_found"


def test_created_is_stable_across_servers(serve) -> None:
    first = {m.id: m.created for m in serve().client().models.list().data}
    second = {m.id: m.created for m in serve().client().models.list().data}
    assert first == second and len(set(first.values())) == len(first)


def test_a_wrong_or_missing_access_key_is_a_401(served) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        served.client(api_key="not-the-key").models.list()
    assert caught.value.code == "invalid_api_key"

    bare = requests.get(f"{served.url}/v1/models", timeout=10)
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "invalid_request_error"
    basic = requests.get(
        f"{served.url}/v1/models", headers={"Authorization": f"Basic {ACCESS_KEY}"}, timeout=10
    )
    assert basic.status_code == 401


def test_any_of_several_access_keys_is_accepted(serve) -> None:
    served = serve(access_keys="first-client-key, second-client-key")
    assert served.client(api_key="second-client-key").models.list().data


def test_health_needs_no_key(served) -> None:
    answer = requests.get(f"{served.url}/health", timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_the_blueprint_can_live_under_a_prefix(serve) -> None:
    served = serve(url_prefix="/openai")
    assert requests.get(f"{served.url}/openai/health", timeout=10).json() == {"status": "ok"}
    client = openai.OpenAI(
        base_url=f"{served.url}/openai/v1",
        api_key=ACCESS_KEY,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(trust_env=False),
    )
    assert client.models.retrieve("imagen4").id == "imagen4"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": {"x": "fal-ai/../secrets"}}, "dot segments"),
        ({"models": {"x": "https://evil.example/x"}}, "refused"),
        ({"models": {"x": "fal-ai/flux%2Fdev"}}, "encoded separator"),
        ({"models": {"x": "flux"}}, "owner/app"),
        ({"models": {"x": "fal-ai/flux/requests/1"}}, "requests"),
        ({"models": "flux-dev=fal-ai/flux/dev"}, "public-id:owner/app"),
        ({"models": {}}, "no models"),
        ({"access_keys": []}, "no access keys"),
        ({"fal_keys": []}, "no fal keys"),
        ({"generation_timeout": 0}, "generation_timeout"),
        ({"schemas": {"fal-ai/flux/dev": {"paths": {}}}}, "cannot be read"),
    ],
)
def test_bad_settings_are_refused_at_creation(overrides: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {
        "models": {"flux-dev": "fal-ai/flux/dev"},
        "access_keys": ["k"],
        "fal_keys": ["f"],
        **overrides,
    }
    with pytest.raises(ValueError, match=message):
        create_openai_blueprint(**settings)  # type: ignore[arg-type]


def test_settings_default_to_the_seeds_environment_variables(
    monkeypatch: pytest.MonkeyPatch, fal: FakeFal
) -> None:
    monkeypatch.setenv("SUPPORTED_MODELS", "dev:fal-ai/flux/dev, pro:fal-ai/imagen4/preview")
    monkeypatch.setenv("CUSTOM_ACCESS_KEY", "env-client-key")
    monkeypatch.setenv("AI_KEYS", f"{FAL_KEY}, fal-second")
    monkeypatch.setenv("FAL_KEY", "ignored-when-ai-keys-is-set")
    app = flask.Flask("env")
    app.register_blueprint(create_openai_blueprint(session=fal.session()))
    client = app.test_client()

    listed = client.get("/v1/models", headers={"Authorization": "Bearer env-client-key"})
    assert [m["id"] for m in listed.get_json()["data"]] == ["dev", "pro"]
    monkeypatch.delenv("AI_KEYS")
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    create_openai_blueprint(name="second")
    monkeypatch.delenv("FAL_KEY")
    with pytest.raises(ValueError, match="no fal keys"):
        flask.Flask("third").register_blueprint(create_openai_blueprint(name="third"))


def test_unauthenticated_serving_is_explicit_and_logged(
    fal: FakeFal, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError):
        create_openai_blueprint(models="a:fal-ai/flux/dev", access_keys="", fal_keys="f")
    blueprint = create_openai_blueprint(
        models="a:fal-ai/flux/dev", fal_keys="f", access_keys="", allow_unauthenticated=True
    )
    app = flask.Flask("open")
    app.register_blueprint(blueprint)
    assert app.test_client().get("/v1/models").status_code == 200
    assert any("no access key" in r.getMessage() for r in caplog.records)


def test_concurrent_first_requests_fetch_a_schema_once(serve, fal: FakeFal) -> None:
    fal.document_delay = 0.4
    served = serve()
    results: list[int] = []

    def generate() -> None:
        api = served.client()
        results.append(len(api.images.generate(model="imagen4", prompt="together").data))

    threads = [threading.Thread(target=generate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == [1] * 6
    fetches = [c for c in fal.calls if c.host == "fal.ai"]
    assert [c.query for c in fetches] == ["endpoint_id=fal-ai/imagen4/preview"]
    served.client().images.generate(model="imagen4", prompt="cached")
    assert len([c for c in fal.calls if c.host == "fal.ai"]) == 1


def test_a_model_without_a_schema_fails_alone(api: openai.OpenAI, fal: FakeFal) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        api.images.generate(model="missing", prompt="p")

    assert caught.value.status_code == 502 and caught.value.code == "schema_unavailable"
    assert "x-should-retry" not in caught.value.response.headers
    assert submits(fal) == []
    assert len(api.images.generate(model="imagen4", prompt="still fine").data) == 1


def test_given_schemas_are_used_instead_of_fetching(serve, fal: FakeFal) -> None:
    document = openapi_document("fal-ai/flux/dev")
    api = serve(schemas={"fal-ai/flux/dev": document}).client()
    api.images.generate(model="flux-dev", prompt="offline", size="640x480")

    assert [c for c in fal.calls if c.host == "fal.ai"] == []
    assert submits(fal)[0].json()["image_size"] == {"width": 640, "height": 480}


class _BrokenSession(requests.Session):
    def send(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"a bug holding {FAL_KEY}")


def test_an_unexpected_error_is_an_openai_shaped_500_without_details(
    serve, caplog: pytest.LogCaptureFixture
) -> None:
    api = serve(session=_BrokenSession()).client()
    with pytest.raises(openai.InternalServerError) as caught:
        api.images.generate(model="flux-dev", prompt="p")

    assert caught.value.status_code == 500
    assert caught.value.body["type"] == "server_error"
    assert caught.value.code == "internal_error"
    assert FAL_KEY not in caught.value.response.text
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)
