"""The optional ``allowed_origins`` guard: other websites must not spend the owner's credits."""

from __future__ import annotations

import logging

import pytest
from conftest import PROXY, target

from flask_fal_proxy import ProxyConfig

RUN = "https://fal.run/fal-ai/flux/dev"
SITE = "https://app.example.com"


@pytest.fixture
def guarded(make_app):
    return make_app(allowed_origins=[SITE, "http://localhost:5173"]).test_client()


def post(client, **headers):
    return client.post(PROXY, headers={**target(RUN), **headers}, json={"prompt": "x"})


@pytest.mark.parametrize(
    ("entry", "normalized"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80", "http://app.example.com"),
        ("https://app.example.com:8443", "https://app.example.com:8443"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    ],
)
def test_entries_are_stored_as_browsers_write_origin(entry, normalized):
    assert ProxyConfig(allowed_origins=[entry]).allowed_origins == (normalized,)


@pytest.mark.parametrize(
    "entry",
    [
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?x=1",
        "https://app.example.com#top",
        "https://user@app.example.com",
        "https://user:pw@app.example.com",
        "app.example.com",
        "ftp://app.example.com",
        "https://",
        "https://app.example.com:99999",
        "https://app.example.com:port",
        "https://bücher.example",
        "https://app.example.com\t",
        "https://app .example.com",
        "null",
        "*",
        "https://*.example.com",
        "",
    ],
)
def test_entries_that_are_not_an_origin_stop_the_start(entry):
    with pytest.raises(ValueError):
        ProxyConfig(allowed_origins=[entry])


def test_a_single_string_is_refused_not_split_into_characters():
    with pytest.raises(ValueError):
        ProxyConfig(allowed_origins=SITE)


def test_empty_list_leaves_only_the_cross_origin_rule(client, make_app, fake):
    # Without a list, a foreign page is still refused by the rule every face
    # has; a page on the proxy's own host and a client without Origin pass.
    foreign = post(client, Origin="https://evil.example")
    assert foreign.status_code == 403 and foreign.json["code"] == "cross_origin_refused"
    assert post(client, Origin="http://localhost").status_code == 200
    assert post(client).status_code == 200
    open_to_all = make_app(cross_origin_protection=False).test_client()
    assert post(open_to_all, Origin="https://evil.example").status_code == 200
    assert len(fake.calls) == 3


@pytest.mark.parametrize("origin", [SITE, "http://localhost:5173"])
def test_listed_origin_is_forwarded(guarded, fake, origin):
    response = post(guarded, Origin=origin)
    assert response.status_code == 200
    assert len(fake.calls) == 1
    assert "Origin" not in fake.calls[0].headers


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.example.com.evil.example",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://APP.example.com",
        "null",
        "",
        SITE + "/",
    ],
)
def test_other_origins_get_403_json_and_nothing_is_forwarded(guarded, fake, caplog, origin):
    response = post(guarded, Origin=origin)
    assert response.status_code == 403
    assert response.get_json()["code"] == "origin_not_allowed"
    assert fake.calls == []
    assert any("origin_not_allowed" in r.getMessage() for r in caplog.records)


def test_refusal_comes_before_the_target_and_the_body_are_looked_at(make_app, fake):
    client = make_app(allowed_origins=[SITE], max_request_body_bytes=10).test_client()
    response = client.post(
        PROXY,
        headers={**target("https://evil.example/x"), "Origin": "https://evil.example"},
        data=b"{" * 100,
        content_type="text/plain",
    )
    assert (response.status_code, response.get_json()["code"]) == (403, "origin_not_allowed")
    assert fake.calls == []


def test_two_origin_headers_are_refused_even_if_one_is_listed(guarded, fake):
    response = guarded.post(
        PROXY,
        headers=[("Origin", SITE), ("Origin", "https://evil.example"), *target(RUN).items()],
        json={},
    )
    assert response.status_code == 403
    assert fake.calls == []


@pytest.mark.parametrize("fetch_site", [None, "same-origin", "none", "SAME-ORIGIN"])
def test_without_origin_same_origin_and_non_browser_calls_pass(guarded, fake, fetch_site):
    headers = {} if fetch_site is None else {"Sec-Fetch-Site": fetch_site}
    response = guarded.get(PROXY, headers={**target(RUN), **headers})
    assert response.status_code == 200
    assert len(fake.calls) == 1


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", "Cross-Site"])
def test_without_origin_a_browser_reporting_a_foreign_initiator_is_refused(
    guarded, fake, fetch_site
):
    response = guarded.get(PROXY, headers={**target(RUN), "Sec-Fetch-Site": fetch_site})
    assert response.status_code == 403
    assert fake.calls == []


def test_a_listed_origin_decides_even_when_the_call_is_cross_site(guarded, fake):
    response = post(guarded, Origin=SITE, **{"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert len(fake.calls) == 1


def test_refusal_log_line_names_the_code_not_the_key(guarded, caplog):
    caplog.set_level(logging.WARNING, logger="flask_fal_proxy")
    post(guarded, Origin="https://evil.example")
    lines = [r.getMessage() for r in caplog.records if r.name == "flask_fal_proxy"]
    assert any("origin_not_allowed (403)" in line for line in lines)
