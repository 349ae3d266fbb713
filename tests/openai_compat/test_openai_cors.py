"""CORS for pages calling the facade with the OpenAI JS SDK (Flask-CORS, off by default)."""

from __future__ import annotations

import flask
import pytest

from flask_fal_proxy.openai_compat import create_openai_blueprint
from openai_compat.openai_support import ACCESS_KEY

PAGE = "https://app.example"
SDK_HEADERS = "authorization,content-type,x-stainless-arch,x-stainless-retry-count,x-stainless-os"


def _client(**overrides: object) -> flask.testing.FlaskClient:
    app = flask.Flask("cors")
    app.register_blueprint(
        create_openai_blueprint(
            models="flux-dev:fal-ai/flux/dev", access_keys=ACCESS_KEY, fal_keys="f", **overrides
        )
    )
    return app.test_client()


def _preflight(client: flask.testing.FlaskClient, origin: str, headers: str = SDK_HEADERS):
    return client.options(
        "/v1/images/generations",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )


def test_a_preflight_from_an_allowed_origin_allows_the_sdks_headers() -> None:
    answer = _preflight(_client(cors_origins=PAGE), PAGE)

    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == set(SDK_HEADERS.split(","))
    assert "Access-Control-Allow-Credentials" not in answer.headers


def test_other_headers_and_origins_are_not_allowed() -> None:
    client = _client(cors_origins=[PAGE])
    other = _preflight(client, "https://evil.example")
    assert "Access-Control-Allow-Origin" not in other.headers
    cookie = _preflight(client, PAGE, "x-custom-thing")
    assert "x-custom-thing" not in cookie.headers.get("Access-Control-Allow-Headers", "")


def test_refusals_carry_cors_headers_so_the_page_can_read_them() -> None:
    answer = _client(cors_origins=PAGE).get("/v1/models", headers={"Origin": PAGE})
    assert answer.status_code == 401
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE
    assert "x-should-retry" in answer.headers["Access-Control-Expose-Headers"].lower()


def test_cors_is_off_by_default() -> None:
    answer = _preflight(_client(), PAGE)
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_cors_needs_flask_cors(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "flask_cors", None)
    with pytest.raises(ValueError, match="flask-fal-proxy\\[cors\\]"):
        _client(cors_origins=PAGE)
