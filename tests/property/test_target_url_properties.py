"""Generated hostile target URLs: refused, or sent with exactly the approved host, path and query.

The strategies assemble URLs from the parts attackers play with (scheme
spellings, userinfo, look-alike and numeric hosts, ports, dot segments and
their encodings, separators, control and unicode characters, fragments) and
then mutate them, so the search covers both known tricks and their mixtures.
The oracle is independent of the code under test: ``urllib.parse`` for the
structure and the bytes a raw socket on 127.0.0.1 receives for the wire.
"""

from __future__ import annotations

import itertools
import threading
from urllib.parse import unquote, urlsplit

import flask
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from wire import REQUEST_LINE, WireRecorder, budget

from flask_fal_proxy import ProxyError, create_blueprint
from flask_fal_proxy.fal_protocol import is_fal_host
from flask_fal_proxy.relay import default_session
from flask_fal_proxy.testing import LoopbackAdapter
from flask_fal_proxy.validation import parse_target_url

KEY = "property-key-never-on-the-wire-path"

SCHEMES = ["https://"] * 8 + [
    "HTTPS://",
    "http://",
    "https:/",
    "https:\\\\",
    "https:///",
    "//",
    "",
    " https://",
    "https\t://",
    "wss://",
]
FAL_HOSTS = ["fal.run", "queue.fal.run", "rest.fal.ai", "fal.ai", "gateway.fal.ai", "a.b.fal.run"]
HOSTILE_HOSTS = [
    "evil.com",
    "fal.run.evil.com",
    "evilfal.run",
    "FAL.RUN",
    "Fal.Run",
    "fal.run.",
    "fal\u3002run",
    "fal\uff0erun",
    "fal\u2024run",
    "xn--fal-abc.run",
    "xn--fl-zia.run",
    "f\u00e4l.run",
    "fa\u0131.run",
    "127.0.0.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",
    "localhost",
    "fal.run\\@evil.com",
    "evil.com\\@fal.run",
    "evil.com#@fal.run",
    "evil.com?@fal.run",
    "evil.com%23@fal.run",
    "fal.run%2eevil.com",
    "fal.run%2F@evil.com",
    "-fal.run",
    "fal..run",
    ".fal.run",
    "fal.run\x00.evil.com",
    "fal.run%00.evil.com",
]
USERINFO = [""] * 6 + ["fal.run@", "user:pass@", "@", "evil.com@", ":@", "%40@"]
PORTS = [""] * 6 + [":443", ":80", ":", ":8443", ":0", ":99999", ":443:443", ": 443"]
SEGMENTS = [
    "fal-ai",
    "flux",
    "dev",
    "requests",
    "status",
    "storage",
    "upload",
    "initiate",
    ".",
    "..",
    "...",
    ".hidden",
    "%2e",
    "%2E",
    ".%2e",
    "%2e%2e",
    "%2E%2E",
    "..;",
    ";",
    "..%3b",
    "%2f",
    "%2F",
    "a%2fb",
    "%5c",
    "a\\b",
    "\\",
    "%25",
    "%252e",
    "%41",
    "%20",
    "%zz",
    "%",
    "",
    "@",
    "evil.com",
    "https:",
    "fal.run@evil.com",
    ":",
    "~user",
    "a,b",
    "\t",
    "\n",
    "\r\nX-Injected: 1",
    "\x00",
    "\x7f",
    " ",
    "\u3002",
    "\uff0e\uff0e",
    "\u2215",
    "caf\u00e9",
    "%C3%A9",
    "%c3%a9",
    "*",
    "(x)",
    "$",
    "'",
    "!",
]
QUERY_PARTS = [
    "",
    "?",
    "?x=1",
    "?storage_type=fal-cdn-v3",
    "?logs=1",
    "?a=1&b=2",
    "?a=%2F",
    "?a=%41",
    "?a=%zz",
    "?a=b#c",
    "?@evil.com",
    "?a=\u00e9",
    "?a= b",
    "?a=\x00",
    "??",
    "?a=1;b=2",
    "?x=https://evil.com/",
]
FRAGMENTS = [""] * 8 + ["#", "#x", "#@evil.com", "#/../../x"]
MUTANTS = "/\\@#?%.:;\t\n\r\x00 \u3002\uff0e,&=~*"

CLEAN_SEGMENTS = ["fal-ai", "flux", "dev", "requests", "status", "x", "v1.5", "a_b", "~u"]


def _mostly(draw: st.DrawFn, clean: list[str], hostile: list[str], odds: int = 6) -> str:
    # One hostile part in a URL that is otherwise fine finds more than all-random URLs,
    # which are nearly always refused for their first flaw.
    if draw(st.integers(0, odds)) == 0:
        return draw(st.sampled_from(hostile))
    return draw(st.sampled_from(clean))


@st.composite
def target_urls(draw: st.DrawFn) -> str:
    host = _mostly(draw, FAL_HOSTS, HOSTILE_HOSTS)
    if draw(st.integers(0, 8)) == 0:
        at = draw(st.integers(0, len(host) - 1))
        host = host[:at] + host[at].swapcase() + host[at + 1 :]
    segs = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 12)) == 0:
            segs.append(draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=6)))
        else:
            segs.append(_mostly(draw, CLEAN_SEGMENTS, SEGMENTS, odds=2))
    url = (
        _mostly(draw, ["https://"], SCHEMES[8:], odds=12)
        + _mostly(draw, [""], USERINFO[6:], odds=10)
        + host
        + _mostly(draw, [""], PORTS[6:], odds=10)
        + _mostly(draw, ["/"], ["//", "", "\\", "/./", "/%2e/"], odds=10)
        + "/".join(segs)
        + _mostly(draw, QUERY_PARTS[:7], QUERY_PARTS[7:], odds=4)
        + _mostly(draw, [""], FRAGMENTS[8:], odds=10)
    )
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(st.sampled_from(MUTANTS)) + url[at:]
    if draw(st.integers(0, 60)) == 0:
        url += "/a" * draw(st.integers(4000, 5000))
    return url


def _assert_canonical(url: str) -> None:
    """What an accepted URL must be, judged by urllib.parse and plain string rules."""
    target = parse_target_url(url)
    assert target.url == url
    assert all(0x21 <= ord(c) <= 0x7E for c in url), "non-printable or non-ASCII accepted"
    assert "\\" not in url and "#" not in url and "," not in url
    parts = urlsplit(url)
    assert parts.scheme == "https"
    assert parts.username is None and parts.password is None
    assert parts.port is None and ":" not in parts.netloc
    assert parts.netloc == parts.hostname == target.host
    assert target.host == target.host.lower() and not target.host.endswith(".")
    assert is_fal_host(target.host)
    assert parts.path == target.path and target.path.startswith("/")
    assert ("?" + parts.query if parts.query else "") == target.query.rstrip("?") or (
        target.query == "?" + parts.query
    )
    assert parts.fragment == ""
    decoded = unquote(target.path)
    segments = decoded.split("/")[1:]
    assert "." not in segments and ".." not in segments
    assert "" not in segments[:-1] or segments == [""]
    assert decoded.count("/") == target.path.count("/"), "an encoded slash survived"


@budget(3000)
@given(target_urls())
def test_every_generated_url_is_refused_or_canonical(url):
    try:
        parse_target_url(url)
    except ProxyError as err:
        assert err.status == 412 and err.code == "invalid_target_url"
        event(f"refused: {err.message}")
        return
    event("accepted")
    _assert_canonical(url)


# --- the wire: what a raw socket on 127.0.0.1 receives -------------------------------


@pytest.fixture(scope="module")
def recorder():
    recorder = WireRecorder()
    yield recorder
    recorder.close()


def _proxy_app(recorder: WireRecorder, **config) -> flask.Flask:
    session = default_session()
    session.mount("https://", LoopbackAdapter(recorder.port, max_retries=0))
    app = flask.Flask("property-proxy")
    app.config["FAL_KEY"] = KEY
    app.register_blueprint(create_blueprint(session=session, **config))
    return app


@pytest.fixture(scope="module")
def open_client(recorder):
    every_fal_host = ["fal.run/**", "*.fal.run/**", "*.*.fal.run/**", "fal.ai/**", "*.fal.ai/**"]
    return _proxy_app(recorder, allowed_url_patterns=every_fal_host).test_client()


_probes = itertools.count()
_probe_lock = threading.Lock()


def _send(client, url: str, method: str = "POST"):
    with _probe_lock:
        probe = f"p{next(_probes)}"
    try:
        response = client.open(
            "/api/fal/proxy",
            method=method,
            headers={"x-fal-target-url": url, "x-fal-probe": probe},
            json={} if method == "POST" else None,
        )
    except ValueError:
        return None, probe  # the client itself cannot send it (e.g. a newline)
    return response, probe


def _assert_on_wire_as_approved(recorder, response, probe: str, url: str) -> None:
    seen = recorder.take(probe)
    event("sent" if seen else f"not sent ({response and response.status_code})")
    if response is None or response.status_code != 200:
        assert seen == [], f"refused ({response and response.status_code}) but sent: {seen}"
        if response is not None:
            assert response.status_code in (403, 412), response.status_code
            assert response.get_json()["code"] in ("invalid_target_url", "endpoint_not_allowed")
        return
    target = parse_target_url(url)
    (call,) = seen
    line = REQUEST_LINE.fullmatch(call.request_line)
    assert line is not None, call.request_line
    assert line["target"] == target.path + target.query
    assert call.host == target.host
    parts = urlsplit(url)
    assert (call.host, line["target"]) == (
        parts.hostname,
        parts.path + ("?" + parts.query if parts.query else ""),
    )


@budget(1000)
@given(target_urls(), st.sampled_from(["POST", "GET", "PUT", "DELETE"]))
def test_generated_urls_on_the_wire_are_exactly_the_approved_ones(
    recorder, open_client, url, method
):
    response, probe = _send(open_client, url, method)
    _assert_on_wire_as_approved(recorder, response, probe, url)


# --- allowed endpoints: generated patterns against generated paths ------------------

WORDS = ["fal-ai", "flux", "dev", "schnell", "owner", "app", "x", "lora"]
path_segments = st.lists(
    st.one_of(
        st.sampled_from(WORDS),
        st.sampled_from([".", "..", "%2e%2e", "a%2fb", ".x", "dev.v2", "*", "", "~"]),
    ),
    min_size=0,
    max_size=5,
)
pattern_segments = st.lists(st.one_of(st.sampled_from(WORDS), st.just("*")), min_size=1, max_size=3)


@st.composite
def endpoint_patterns(draw: st.DrawFn) -> str:
    segs = draw(pattern_segments)
    if draw(st.booleans()):
        segs.append("**")
    return "/".join(segs)


def _oracle(pattern: str, endpoint: str) -> bool:
    """Glob semantics for this grammar, segment by segment, written independently."""
    want = pattern.split("/")
    have = endpoint.split("/")
    if want[-1] == "**":
        want = want[:-1]
        if len(have) < len(want):
            return False
        tail_ok = all(s not in ("", ".", "..") for s in have[len(want) :])
        have, rest_ok = have[: len(want)], tail_ok
    else:
        rest_ok = True
        if len(have) != len(want):
            return False
    for w, h in zip(want, have, strict=True):
        if w == "*":
            if h in ("", ".", ".."):
                return False
        elif w != h:
            return False
    return rest_ok


@budget(600)
@given(st.lists(endpoint_patterns(), min_size=1, max_size=3), path_segments)
def test_generated_allow_lists_admit_exactly_the_matching_endpoints(recorder, patterns, segs):
    client = _proxy_app(recorder, allowed_endpoints=patterns).test_client()
    endpoint = "/".join(segs)
    url = f"https://fal.run/{endpoint}"
    response, probe = _send(client, url)
    _assert_on_wire_as_approved(recorder, response, probe, url)
    try:
        parse_target_url(url)
    except ProxyError:
        assert response.status_code == 412
        return
    expected = any(_oracle(p, endpoint) for p in patterns)
    assert (response.status_code == 200) == expected, (patterns, endpoint, response.status_code)
    if not expected:
        assert response.get_json()["code"] == "endpoint_not_allowed"
