"""The glob helpers: every case of index.spec.ts of @fal-ai/server-proxy, and picomatch edges."""

import pytest

from flask_fal_proxy import DEFAULT_ALLOWED_URL_PATTERNS
from flask_fal_proxy.fal_protocol import is_fal_host
from flask_fal_proxy.policy import compile_patterns as create_url_matcher
from flask_fal_proxy.validation import parse_target_url


# The TS proxy's helpers, expressed through this package's public path.
def is_allowed_url(url, patterns=DEFAULT_ALLOWED_URL_PATTERNS):
    return create_url_matcher(tuple(patterns))(url)


def is_allowed_endpoint(endpoint, patterns):
    return not patterns or create_url_matcher(tuple(patterns))(endpoint)


def get_endpoint(url):
    return parse_target_url(url).endpoint

REST = "rest.fal.ai"


def cases(matcher, expected):
    return [(value, matcher(value), want) for value, want in expected.items()]


@pytest.mark.parametrize(
    "patterns, expected",
    [
        (
            ["fal.run/exact"],
            {"fal.run/exact": True, "fal.run/exact/more": False, "fal.run/other": False},
        ),
        (
            ["fal.run/*/path"],
            {
                "fal.run/anything/path": True,
                "fal.run/other/path": True,
                "fal.run/nested/more/path": False,
                "fal.run/path": False,
            },
        ),
        (
            ["fal.run/**"],
            {
                "fal.run/": True,
                "fal.run/path": True,
                "fal.run/nested/path": True,
                "fal.run/deeply/nested/path/here": True,
                "fal.run": True,
            },
        ),
        (
            ["fal.run/path\\?query=value", "fal.run/api/**"],
            {
                "fal.run/path?query=value": True,
                "fal.run/pathXquery=value": False,
                "fal.run/api/test?foo=bar": True,
            },
        ),
    ],
)
def test_create_url_matcher_spec(patterns, expected):
    matcher = create_url_matcher(patterns)
    for value, want in expected.items():
        assert matcher(value) is want, value


@pytest.mark.parametrize(
    "url, allowed",
    [
        ("fal.run/some/path", True),
        ("fal.run/", True),
        ("fal.run/v1/workflows/abc123/run", True),
        ("fal.run", True),
        ("queue.fal.run/some/path", True),
        ("queue.fal.run/", True),
        ("queue.fal.run", True),
        ("fal.dev/some/path", False),
        ("queue.fal.dev/some/path", False),
        ("fal.ai/some/path", False),
        ("queue.fal.ai/some/path", False),
        (f"{REST}/storage/upload/initiate?storage_type=fal-cdn-v3", True),
        (f"{REST}/storage/upload/complete-multipart?storage_type=fal-cdn-v3", True),
        (f"{REST}/storage/upload/initiate?storage_type=other", False),
        (f"{REST}/storage/upload/initiate", False),
        (f"{REST}/storage/download?storage_type=fal-cdn-v3", False),
        ("example.com/path", False),
        ("fal.com/path", False),
        ("fal.io/path", False),
        ("api.fal.run/path", False),
        ("notfal.run/path", False),
        ("fal.run.evil.com/path", False),
        ("", False),
        ("rest.beta.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3", False),
    ],
)
def test_is_allowed_url_default_patterns(url, allowed):
    assert is_allowed_url(url) is allowed


@pytest.mark.parametrize(
    "extra, url",
    [
        ("fal.ai/**", "fal.ai/some/path"),
        ("fal.dev/**", "fal.dev/some/path"),
        ("queue.fal.ai/**", "queue.fal.ai/some/path"),
    ],
)
def test_is_allowed_url_custom_patterns(extra, url):
    assert is_allowed_url(url, [*DEFAULT_ALLOWED_URL_PATTERNS, extra]) is True
    assert is_allowed_url(url) is False


def test_is_allowed_url_specific_and_empty_patterns():
    assert is_allowed_url("fal.run/my-specific-app/run", ["fal.run/my-specific-app/**"]) is True
    assert is_allowed_url("fal.run/other-app/run", ["fal.run/my-specific-app/**"]) is False
    assert is_allowed_url("fal.run/path", []) is False


@pytest.mark.parametrize(
    "url, endpoint",
    [
        ("https://fal.run/fal-ai/flux-dev", "fal-ai/flux-dev"),
        ("https://fal.run/fal-ai/flux/dev", "fal-ai/flux/dev"),
        ("https://fal.run/provider/app/path/to/endpoint", "provider/app/path/to/endpoint"),
        (
            "https://queue.fal.run/fal-ai/flux-dev/requests/abc123",
            "fal-ai/flux-dev/requests/abc123",
        ),
        ("https://fal.run/fal-ai/flux-dev?some_param=value", "fal-ai/flux-dev"),
        ("https://fal.run/", ""),
    ],
)
def test_get_endpoint(url, endpoint):
    assert get_endpoint(url) == endpoint


@pytest.mark.parametrize(
    "endpoint, patterns, allowed",
    [
        ("fal-ai/flux-dev", ["fal-ai/flux-dev"], True),
        ("fal-ai/other", ["fal-ai/flux-dev"], False),
        ("fal-ai/flux-dev/extra", ["fal-ai/flux-dev"], False),
        ("fal-ai/flux-dev", ["fal-ai/*"], True),
        ("fal-ai/fast-sdxl", ["fal-ai/*"], True),
        ("fal-ai/flux/dev", ["fal-ai/*"], False),
        ("fal-ai/flux-dev", ["*/flux-dev"], True),
        ("other-provider/flux-dev", ["*/flux-dev"], True),
        ("fal-ai/flux-dev", ["fal-ai/**"], True),
        ("fal-ai/flux/dev", ["fal-ai/**"], True),
        ("fal-ai/flux/dev/extra/path", ["fal-ai/**"], True),
        ("fal-ai", ["fal-ai/**"], True),
        ("provider/app/v1/endpoint", ["provider/app/**"], True),
        ("provider/other/v1/endpoint", ["provider/app/**"], False),
        ("fal-ai/flux-dev", ["fal-ai/**", "runware/*", "specific/endpoint"], True),
        ("runware/fast-sdxl", ["fal-ai/**", "runware/*", "specific/endpoint"], True),
        ("specific/endpoint", ["fal-ai/**", "runware/*", "specific/endpoint"], True),
        ("other-provider/model", ["fal-ai/**", "runware/*", "specific/endpoint"], False),
        ("runware/nested/path", ["fal-ai/**", "runware/*", "specific/endpoint"], False),
        ("fal-ai/flux-dev", [], True),
        ("any/random/endpoint", [], True),
        ("", [], True),
        ("fal-ai/flux/dev", ["fal-ai/**"], True),
        ("fal-ai/flux/schnell", ["fal-ai/**"], True),
        ("fal-ai/lora", ["fal-ai/**"], True),
        ("fal-ai/flux/dev", ["fal-ai/flux/**", "fal-ai/fast-*"], True),
        ("fal-ai/flux/schnell", ["fal-ai/flux/**", "fal-ai/fast-*"], True),
        ("fal-ai/fast-sdxl", ["fal-ai/flux/**", "fal-ai/fast-*"], True),
        ("fal-ai/lora", ["fal-ai/flux/**", "fal-ai/fast-*"], False),
        ("fal-ai/flux-dev/requests/abc123", ["fal-ai/**"], True),
        ("fal-ai/flux-dev/requests/abc123/status", ["fal-ai/**"], True),
    ],
)
def test_is_allowed_endpoint_spec(endpoint, patterns, allowed):
    assert is_allowed_endpoint(endpoint, patterns) is allowed


@pytest.mark.parametrize(
    "pattern, value, want",
    [
        # ? is one character, never a slash
        ("fal-ai/flux-?ev", "fal-ai/flux-dev", True),
        ("fal-ai/flux?dev", "fal-ai/flux/dev", False),
        # classes and alternatives
        ("fal-ai/flux/[ds]*", "fal-ai/flux/dev", True),
        ("fal-ai/flux/[ds]*", "fal-ai/flux/pro", False),
        ("fal-ai/flux/[^d]*", "fal-ai/flux/pro", True),
        ("fal-ai/flux/[^d]*", "fal-ai/flux/dev", False),
        ("fal-ai/[!d]", "fal-ai/!", True),
        ("fal-ai/{flux,sdxl}/dev", "fal-ai/sdxl/dev", True),
        ("fal-ai/{flux,sdxl}/dev", "fal-ai/other/dev", False),
        ("fal-ai/{flux/dev,fast-*}", "fal-ai/fast-lcm", True),
        # a star inside a segment may match nothing, a star segment may not
        ("fal-ai/fast-*", "fal-ai/fast-", True),
        ("fal-ai/*", "fal-ai/", False),
        ("fal.run/*/path", "fal.run//path", True),
        # ** in the middle spans zero or more segments
        ("fal-ai/**/dev", "fal-ai/dev", True),
        ("fal-ai/**/dev", "fal-ai/flux/v1/dev", True),
        ("**/dev", "dev", True),
        # dot: true lets wildcards match dotfiles but never . or .. segments
        ("fal-ai/*", "fal-ai/.hidden", True),
        ("fal-ai/*", "fal-ai/..", False),
        ("fal-ai/**", "fal-ai/../secret", False),
        ("fal-ai/**", "fal-ai/x/./y", False),
        # picomatch lets a trailing wildcard also match a trailing slash
        ("fal-ai/*", "fal-ai/flux/", True),
        # regex metacharacters are literal
        ("fal.run/a+b", "fal.run/a+b", True),
        ("fal.run/a+b", "fal.run/aab", False),
        ("fal.run/x", "falXrun/x", False),
        # ** that is not a whole segment behaves as *
        ("fal-ai/flux**", "fal-ai/flux-dev", True),
        ("fal-ai/flux**", "fal-ai/flux/dev", False),
    ],
)
def test_glob_semantics(pattern, value, want):
    assert create_url_matcher([pattern])(value) is want


@pytest.mark.parametrize(
    "pattern",
    [
        "!fal-ai/**",
        "fal-ai/+(a|b)",
        "fal-ai/@(x)",
        "fal-ai/*(x)",
        "fal-ai/{a,b",
        "fal-ai/x\\",
        "fal-ai/{1..3}",
        "fal-ai/***",
        "**x/y",
    ],
)
def test_unsupported_or_broken_globs_are_refused(pattern):
    with pytest.raises(ValueError, match="invalid glob pattern"):
        create_url_matcher([pattern])


@pytest.mark.parametrize(
    "host, fal",
    [
        ("fal.run", True),
        ("queue.fal.run", True),
        ("rest.fal.ai", True),
        ("fal.ai", True),
        ("notfal.run", False),
        ("fal.run.evil.com", False),
        ("evilfal.ai", False),
        ("fal.ai.", False),
    ],
)
def test_is_fal_host(host, fal):
    assert is_fal_host(host) is fal
