"""What distinguishes one key-holding provider from another, checked once at import.

A provider route is the shared relay plus four facts: where the provider
lives, which header carries the key, which of the client's headers the
provider needs, and which paths a browser may reach with the key. The last
one is the one that matters: a key proxy that forwards any path lets anyone
who can reach it use the key for everything the provider offers (deleting
or cloning voices, fine-tuning, billing endpoints), so a spec names every
path it serves and an empty list serves nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from ..checks import (
    FORBIDDEN_FORWARD_HEADERS,
    as_string_tuple,
    checked_forward_headers,
    is_token,
)
from ..policy import compile_patterns
from ..validation import path_problem

__all__ = [
    "ANTHROPIC",
    "CREDENTIAL_HEADERS",
    "ELEVENLABS",
    "OPENAI",
    "PROVIDERS",
    "ProviderSpec",
    "provider_spec",
]

# Headers that carry a provider key somewhere; a client's copy never travels,
# whichever provider the route is for, and no spec may forward one.
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "x-api-key", "xi-api-key", "api-key", "x-goog-api-key"}
)
# What a route can be asked to allow. HEAD and OPTIONS are Flask's to answer
# (OPTIONS is the CORS preflight), never the provider's.
SUPPORTED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _checked_base_url(value: str) -> str:
    """``base_url`` without a trailing slash, once requests is known to send it unchanged.

    The relay refuses a call whose prepared URL differs from the vetted one;
    a base URL that requests would rewrite (an uppercase host, a default
    port) would make every call fail, so it is refused here instead.
    """
    if not isinstance(value, str):
        raise ValueError(f"base_url must be a string, got {value!r}")
    base = value.rstrip("/")
    parts = urlsplit(base)
    if parts.scheme != "https":
        raise ValueError(f"base_url must be an https URL, got {value!r}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise ValueError(f"base_url must name a host and no credentials, got {value!r}")
    if parts.query or parts.fragment or "?" in base or "#" in base:
        raise ValueError(f"base_url cannot have a query or fragment, got {value!r}")
    if parts.path and path_problem(parts.path[1:]):
        raise ValueError(f"base_url has a non-canonical path: {value!r}")
    probe = f"{base}/probe"
    prepared = requests.PreparedRequest()
    prepared.prepare_url(probe, None)
    if prepared.url != probe:
        raise ValueError(f"base_url is not in canonical form (requests sends {prepared.url!r})")
    return base


def _checked_headers(name: str, values: Sequence[str], auth_header: str) -> tuple[str, ...]:
    return checked_forward_headers(name, values, CREDENTIAL_HEADERS | {auth_header})


def checked_methods(values: Sequence[str]) -> tuple[str, ...]:
    """Upper-cased methods, each one a route may serve; ``ValueError`` otherwise."""
    methods = tuple(m.upper() for m in as_string_tuple("allowed_methods", values))
    for method in methods:
        if method not in SUPPORTED_METHODS:
            raise ValueError(f"allowed_methods cannot include {method!r}")
    return methods


def checked_paths(values: Sequence[str]) -> tuple[tuple[str, ...], Callable[[str], bool]]:
    """The globs without leading slashes, and their compiled matcher."""
    paths = tuple(p.lstrip("/") for p in as_string_tuple("allowed_paths", values))
    return paths, compile_patterns(paths)


@dataclass(frozen=True)
class ProviderSpec:
    """One provider behind a key: where it is, how the key is sent, what may be called.

    ``allowed_paths`` are globs in the package's dialect (``*`` stays within
    a segment) matched against the path after the route, without its
    leading slash; ``forward_request_headers`` are the provider's own
    headers the client sets (Anthropic's ``anthropic-version``), beyond the
    ``content-type``, ``accept`` and ``user-agent`` every route forwards.
    """

    name: str
    base_url: str
    auth_header: str
    key_env: str
    key_prefix: str = ""
    forward_request_headers: Sequence[str] = ()
    allowed_paths: Sequence[str] = ()
    allowed_methods: Sequence[str] = ("POST",)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for attribute in ("name", "key_env"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value.isidentifier():
                raise ValueError(f"{attribute} must be an identifier, got {value!r}")
        set_(self, "base_url", _checked_base_url(self.base_url))
        auth = self.auth_header.lower() if isinstance(self.auth_header, str) else ""
        if not is_token(auth) or auth in FORBIDDEN_FORWARD_HEADERS - {"authorization"}:
            raise ValueError(f"auth_header cannot be {self.auth_header!r}")
        set_(self, "auth_header", auth)
        if not isinstance(self.key_prefix, str) or any(
            not 0x20 <= ord(c) < 0x7F for c in self.key_prefix
        ):
            raise ValueError("key_prefix must be printable ASCII")
        set_(
            self,
            "forward_request_headers",
            _checked_headers("forward_request_headers", self.forward_request_headers, auth),
        )
        set_(self, "allowed_paths", checked_paths(self.allowed_paths)[0])
        set_(self, "allowed_methods", checked_methods(self.allowed_methods))


ANTHROPIC = ProviderSpec(
    "anthropic",
    "https://api.anthropic.com",
    "x-api-key",
    "ANTHROPIC_API_KEY",
    forward_request_headers=("anthropic-version", "anthropic-beta"),
    allowed_paths=("v1/messages", "v1/messages/count_tokens"),
)
ELEVENLABS = ProviderSpec(
    "elevenlabs",
    "https://api.elevenlabs.io",
    "xi-api-key",
    "ELEVENLABS_API_KEY",
    allowed_paths=("v1/text-to-speech/*", "v1/text-to-speech/*/stream", "v1/sound-generation"),
)
OPENAI = ProviderSpec(
    "openai",
    "https://api.openai.com",
    "authorization",
    "OPENAI_API_KEY",
    key_prefix="Bearer ",
    allowed_paths=("v1/chat/completions", "v1/responses", "v1/images/generations"),
)
PROVIDERS = {spec.name: spec for spec in (ANTHROPIC, ELEVENLABS, OPENAI)}


def provider_spec(provider: ProviderSpec | str) -> ProviderSpec:
    """The spec itself, or the built-in one a name stands for."""
    if isinstance(provider, ProviderSpec):
        return provider
    if isinstance(provider, str) and provider in PROVIDERS:
        return PROVIDERS[provider]
    raise ValueError(
        f"unknown provider {provider!r}: pass a ProviderSpec or one of {', '.join(PROVIDERS)}"
    )
