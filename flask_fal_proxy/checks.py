"""The checks every face's settings pass once, at creation.

A mistake in the configuration of a key-holding proxy should stop the
deployment, not surface as a 500 on the first browser call: every face's
config object runs its fields through these and turns a bad value into a
``ValueError`` at start-up. Nothing here runs per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from .fal_protocol import TARGET_URL_HEADER
from .relay import HOP_BY_HOP

__all__ = [
    "FORBIDDEN_FORWARD_HEADERS",
    "MissingExtra",
    "as_string_tuple",
    "check_positive_int",
    "check_positive_number",
    "checked_callable",
    "checked_forward_headers",
    "checked_origins",
    "checked_route",
    "is_token",
    "normalize_origin",
]

class MissingExtra(ImportError, ValueError):
    """A setting needs an optional extra that is not installed.

    An ``ImportError`` because that is what it is, and a ``ValueError``
    because every other bad setting raises one at creation.
    """

    def __init__(self, feature: str, extra: str, package: str) -> None:
        super().__init__(f"{feature} needs {package}: pip install 'flask-fal-proxy[{extra}]'")


# Headers that must never be forwarded, whatever the configuration says.
FORBIDDEN_FORWARD_HEADERS = HOP_BY_HOP | {
    "authorization",
    "cookie",
    "host",
    "content-length",
    TARGET_URL_HEADER,
}

def as_string_tuple(name: str, value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of strings, not a single string")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{name} must contain non-empty strings, got {item!r}")
    return items


def checked_forward_headers(
    name: str, values: Sequence[str], also_forbidden: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Lower-cased header names a route may forward; never credentials or hop-by-hop ones."""
    headers = tuple(h.lower() for h in as_string_tuple(name, values))
    for header in headers:
        if header in FORBIDDEN_FORWARD_HEADERS or header in also_forbidden or not is_token(header):
            raise ValueError(f"{name} cannot include {header!r}")
    return headers


def check_positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int")



def checked_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise ValueError(f"{name} must be callable or None")


def checked_route(route: object) -> str:
    """A URL prefix a face is mounted at: ``/a/b``, no trailing slash, no variables."""
    if not isinstance(route, str) or not route.startswith("/") or route.endswith("/"):
        raise ValueError(f"route must start with '/' and not end with one, got {route!r}")
    if "<" in route or "?" in route or "#" in route:
        raise ValueError(f"route cannot hold variables, a query or a fragment: {route!r}")
    return route


def checked_origins(name: str, values: Sequence[str]) -> tuple[str, ...]:
    return tuple(normalize_origin(o) for o in as_string_tuple(name, values))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str) -> str:
    """An allowed origin in the form a browser writes it in ``Origin``.

    Browsers send ``scheme://host[:port]`` in lowercase and leave out the
    default port, so entries are brought to that form here and the request
    check stays a set lookup. ``null`` (sandboxed frames, ``file:`` pages) and
    wildcards are refused: any site can produce them.
    """
    if value == "null" or "*" in value:
        raise ValueError(f"allowed_origins cannot include {value!r}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"allowed_origins entry {value!r} is not an origin") from None
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
        or value.endswith(("?", "#"))
        or not value.isascii()
        or any(ord(c) < 0x21 for c in value)
    ):
        raise ValueError(
            f"allowed_origins entry {value!r} must be scheme://host[:port] with no path"
        )
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def is_token(name: str) -> bool:
    return bool(name) and all(c in _TOKEN_CHARS for c in name)
