import dataclasses
import logging

import flask
import pytest
from conftest import TEST_KEY

from flask_fal_proxy import DEFAULT_ALLOWED_URL_PATTERNS, ProxyConfig, create_blueprint


def test_defaults_match_the_typescript_proxy():
    config = ProxyConfig()
    assert config.allowed_url_patterns == DEFAULT_ALLOWED_URL_PATTERNS
    assert DEFAULT_ALLOWED_URL_PATTERNS == (
        "fal.run/**",
        "queue.fal.run/**",
        "rest.fal.ai/storage/upload/initiate\\?storage_type=fal-cdn-v3",
        "rest.fal.ai/storage/upload/complete-multipart\\?storage_type=fal-cdn-v3",
    )
    assert config.allowed_endpoints == ()
    assert config.allow_unauthorized_requests is True
    assert config.max_request_body_bytes == 32 * 1024 * 1024
    assert config.connect_timeout > 0 and config.read_timeout >= 60


def test_config_is_frozen_and_lists_become_tuples():
    config = ProxyConfig(
        allowed_endpoints=["fal-ai/flux/**"], forward_request_headers=["X-Trace-Id"]
    )
    assert config.allowed_endpoints == ("fal-ai/flux/**",)
    assert config.forward_request_headers == ("x-trace-id",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.allowed_endpoints = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"allowed_endpoints": "fal-ai/flux/**"}, "not a single string"),
        ({"allowed_url_patterns": "fal.run/**"}, "not a single string"),
        ({"allowed_endpoints": [""]}, "non-empty strings"),
        ({"allowed_endpoints": [3]}, "non-empty strings"),
        ({"allowed_endpoints": ["!fal-ai/**"]}, "negation"),
        ({"allowed_url_patterns": ["fal.run/{a,b"]}, "unclosed"),
        ({"forward_request_headers": ["Authorization"]}, "cannot include 'authorization'"),
        ({"forward_request_headers": ["cookie"]}, "cannot include"),
        ({"forward_request_headers": ["x-fal-target-url"]}, "cannot include"),
        ({"forward_request_headers": ["Transfer-Encoding"]}, "cannot include"),
        ({"forward_request_headers": ["bad header"]}, "cannot include"),
        ({"allow_unauthorized_requests": "no"}, "must be a bool"),
        ({"is_authenticated": "yes"}, "callable"),
        ({"resolve_fal_auth": 42}, "callable"),
        ({"max_request_body_bytes": 0}, "positive int"),
        ({"max_request_body_bytes": 1.5}, "positive int"),
        ({"max_request_body_bytes": True}, "positive int"),
        ({"connect_timeout": 0}, "positive number"),
        ({"read_timeout": -1}, "positive number"),
        ({"read_timeout": "10"}, "positive number"),
    ],
)
def test_bad_values_fail_at_start_up(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ProxyConfig(**kwargs)
    with pytest.raises(ValueError, match=message):
        create_blueprint(**kwargs)


def test_unknown_override_is_a_type_error():
    with pytest.raises(TypeError, match="allowedEndpoints"):
        create_blueprint(allowedEndpoints=["x"])


def test_overrides_apply_over_config():
    base = ProxyConfig(allowed_endpoints=["a/b"], max_request_body_bytes=10)
    blueprint = create_blueprint(base, max_request_body_bytes=20)
    config = blueprint.fal_proxy_config
    assert config.allowed_endpoints == ("a/b",)
    assert config.max_request_body_bytes == 20
    assert base.max_request_body_bytes == 10


def _proxy_warnings(caplog):
    return [
        r for r in caplog.records if r.name == "flask_fal_proxy" and r.levelno == logging.WARNING
    ]


def test_permissive_defaults_warn_once_each_at_creation(caplog, make_app):
    app = make_app()
    warnings = _proxy_warnings(caplog)
    assert len(warnings) == 2
    assert "allowed_endpoints is empty" in warnings[0].getMessage()
    assert "allow_unauthorized_requests is True" in warnings[1].getMessage()
    caplog.clear()
    client = app.test_client()
    for _ in range(3):
        client.get(
            "/api/fal/proxy",
            headers={"x-fal-target-url": "https://queue.fal.run/a/b/requests/x/status"},
        )
    assert not [r for r in _proxy_warnings(caplog) if "allowed_endpoints" in r.getMessage()]


def test_strict_config_does_not_warn(caplog):
    create_blueprint(allowed_endpoints=["fal-ai/flux/**"], allow_unauthorized_requests=False)
    assert _proxy_warnings(caplog) == []


def test_route_and_name_are_configurable(make_app):
    app = make_app(route="/fal", name="second")
    rules = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    assert rules["/fal"] == "second.proxy"
    assert "/api/fal/proxy" not in rules


def test_two_proxies_in_one_app(fake):
    app = flask.Flask("two")
    app.config["FAL_KEY"] = TEST_KEY
    app.register_blueprint(create_blueprint(session=fake.session(), name="a", route="/a"))
    app.register_blueprint(
        create_blueprint(session=fake.session(), name="b", route="/b", allowed_endpoints=["x/y"])
    )
    client = app.test_client()
    headers = {"x-fal-target-url": "https://fal.run/fal-ai/flux/dev"}
    assert client.post("/a", headers=headers, json={}).status_code == 200
    assert client.post("/b", headers=headers, json={}).status_code == 403
