"""URL integrity: the URL that is checked is exactly the URL that is sent, or nothing is sent."""

import pytest
from conftest import PROXY, TEST_KEY

from flask_fal_proxy.validation import parse_target_url

HOSTILE = [
    # not https, or not a URL at all
    "http://fal.run/fal-ai/flux/dev",
    "HTTPS://fal.run/fal-ai/flux/dev",
    "ftp://fal.run/x",
    "//fal.run/fal-ai/flux/dev",
    "fal.run/fal-ai/flux/dev",
    "https:/fal.run/x",
    "https:///fal.run/x",
    "not a url",
    "https://",
    # another host, however disguised
    "https://evil.com/fal-ai/flux/dev",
    "https://fal.run.evil.com/fal-ai/flux/dev",
    "https://notfal.run/fal-ai/flux/dev",
    "https://fal.run@evil.com/fal-ai/flux/dev",
    "https://user:pass@fal.run/fal-ai/flux/dev",
    "https://evil.com#@fal.run/fal-ai/flux/dev",
    "https://evil.com?@fal.run/",
    "https://evil.com\\@fal.run/",
    "https://fal.run\\@evil.com/",
    "https://fal.run\\.evil.com/",
    "https://fal.run%2F@evil.com/",
    "https://fal.run%2eevil.com/",
    "https://evil.com%23@fal.run/",
    "https://fal.run:443/fal-ai/flux/dev",
    "https://fal.run:8443/fal-ai/flux/dev",
    "https://fal.run:/x",
    "https://fal.run./fal-ai/flux/dev",
    "https://FAL.RUN/fal-ai/flux/dev",
    "https://Queue.fal.run/fal-ai/flux/dev",
    "https://fal\u3002run/fal-ai/flux/dev",
    "https://fal\uff0erun/fal-ai/flux/dev",
    "https://xn--fal-abc.run/x",
    "https://fa\u0131.run/x",
    "https://127.0.0.1/fal-ai/flux/dev",
    "https://[::1]/fal-ai/flux/dev",
    "https://2130706433/x",
    "https://fal.run\t/x",
    "https://fal.run /x",
    # queries without a path: requests would insert "/"
    "https://fal.run?x=1",
    # paths a server could rewrite into another endpoint
    "https://fal.run/fal-ai/flux/../../evil/model",
    "https://fal.run/fal-ai/flux/./dev",
    "https://fal.run/fal-ai/flux/%2e%2e/evil",
    "https://fal.run/fal-ai/flux/%2E%2E/evil",
    "https://fal.run/fal-ai/flux/.%2e/evil",
    "https://fal.run/fal-ai/flux%2fdev",
    "https://fal.run/fal-ai/flux%2Fdev",
    "https://fal.run/fal-ai/flux%5cdev",
    "https://fal.run/fal-ai/flux\\dev",
    "https://fal.run/fal-ai/flux/..;/evil",
    "https://fal.run/fal-ai/flux;/dev",
    "https://fal.run/fal-ai/flux/%252e%252e/evil",
    "https://fal.run//evil.com/x",
    "https://fal.run/fal-ai//flux",
    "https://fal.run/fal-ai/flux/",
    "https://fal.run/fal-ai/%66lux/dev",
    "https://fal.run/fal-ai/flux/%zz",
    "https://fal.run/fal-ai/flux/%4",
    "https://fal.run/fal-ai/flux/%00",
    # characters libraries re-encode or servers split on
    "https://fal.run/fal-ai/flux/dev#frag",
    "https://fal.run/fal-ai/flux dev",
    "https://fal.run/fal-ai/flux/d\u00e9v",
    "https://fal.run/fal-ai/\u2025/evil",
    "https://fal.run/fal-ai/flux/dev\x00",
    "https://fal.run/fal-ai/flux/dev?x=<script>",
    "https://fal.run/fal-ai/flux/dev?x=a b",
    "https://fal.run/fal-ai/flux/dev?x=%zz",
    "https://fal.run/fal-ai/flux/dev?x=%41",
    "https://fal.run/fal-ai/flux/dev?x=\u00e9",
    "https://fal.run/" + "a" * 9000,
    # fal's own domain but not in the default allow-list
    "https://fal.ai/some/path",
    "https://api.fal.run/x",
    "https://rest.fal.ai/storage/upload/initiate",
    "https://rest.fal.ai/storage/upload/initiate?storage_type=other",
    "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3&x=1",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_target_is_refused_and_nothing_is_sent(client, fake, url):
    response = client.post(PROXY, headers={"x-fal-target-url": url}, json={"prompt": "x"})
    assert response.status_code == 412, url
    body = response.get_json()
    assert body["code"] == "invalid_target_url"
    assert body["message"]
    assert TEST_KEY not in response.get_data(as_text=True)
    assert fake.calls == []


def test_header_values_werkzeug_cannot_even_carry_are_refused(client, fake):
    # A raw header with a CR cannot be built by the test client; the WSGI environ can.
    response = client.post(
        PROXY,
        environ_overrides={"HTTP_X_FAL_TARGET_URL": "https://fal.run/a/b\rX: y"},
        json={},
    )
    assert response.status_code == 412
    assert fake.calls == []


ACCEPTED = [
    ("https://fal.run/fal-ai/flux/dev", "fal.run", "/fal-ai/flux/dev", ""),
    ("https://fal.run/fal-ai/flux/dev/stream", "fal.run", "/fal-ai/flux/dev/stream", ""),
    (
        "https://queue.fal.run/fal-ai/flux/dev?fal_webhook=https%3A%2F%2Fexample.com%2Fhook",
        "queue.fal.run",
        "/fal-ai/flux/dev",
        "fal_webhook=https%3A%2F%2Fexample.com%2Fhook",
    ),
    (
        "https://fal.run/fal-ai/flux-lora/v1.2?a=1&b=x+y&c=%E2%9C%93",
        "fal.run",
        "/fal-ai/flux-lora/v1.2",
        "a=1&b=x+y&c=%E2%9C%93",
    ),
    (
        "https://fal.run/fal-ai/flux/dev?fal_jwt_token=eyJ.abc-_.x~",
        "fal.run",
        "/fal-ai/flux/dev",
        "fal_jwt_token=eyJ.abc-_.x~",
    ),
    ("https://fal.run/fal-ai/caf%C3%A9", "fal.run", "/fal-ai/caf%C3%A9", ""),
]


@pytest.mark.parametrize("url, host, path, query", ACCEPTED)
def test_accepted_target_goes_on_the_wire_unchanged(client, fake, url, host, path, query):
    response = client.post(PROXY, headers={"x-fal-target-url": url}, json={"prompt": "x"})
    assert response.status_code == 200, response.get_data(as_text=True)
    (call,) = fake.calls
    assert (call.host, call.path if "%" not in path else None, call.query) == (
        host,
        path if "%" not in path else None,
        query,
    )
    assert call.headers["Host"] == host


def test_parse_target_url_splits_the_canonical_form():
    target = parse_target_url("https://queue.fal.run/fal-ai/flux/dev/requests/1?logs=1")
    assert target.host == "queue.fal.run"
    assert target.path == "/fal-ai/flux/dev/requests/1"
    assert target.query == "?logs=1"
    assert target.without_scheme == "queue.fal.run/fal-ai/flux/dev/requests/1?logs=1"
    assert target.endpoint == "fal-ai/flux/dev/requests/1"
