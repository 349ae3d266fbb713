"""Checks on what the browser sent, before anything leaves the server.

The target URL is accepted only in a narrow canonical form: lowercase
``https://`` scheme, a lowercase fal host name with no port and no userinfo,
a path of plain segments and a query of URL-safe characters. Anything an HTTP
library, a CDN or fal's router could rewrite (dot segments, encoded slashes
or dots, doubled slashes, backslashes, unicode, uppercase hosts) is refused,
so the string the policy matched is the string that goes on the wire.

Bodies are read under a size cap before anything is forwarded, and a JSON
body must be strict RFC 8259 JSON: every route that reads JSON uses the one
check, :func:`strict_json.check_json`, re-exported here with ``load_json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import errors
from .fal_protocol import is_fal_host
from .strict_json import MAX_JSON_DEPTH, check_json, load_json

if TYPE_CHECKING:
    import flask

__all__ = [
    "MAX_JSON_DEPTH",
    "Target",
    "check_json",
    "is_header_value",
    "load_json",
    "parse_target_url",
    "path_problem",
    "query_problem",
    "read_body",
    "read_json_body",
]

MAX_TARGET_URL_LENGTH = 8192

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_QUERY_CHARS = r"[A-Za-z0-9\-._~%:@+,=!$*'()/?&;]*"
_TARGET_RE = re.compile(
    rf"https://(?P<host>{_LABEL}(?:\.{_LABEL})+)"
    r"(?P<path>/[A-Za-z0-9\-._~%:@+,=!$*'()/]*)"
    rf"(?P<query>\?{_QUERY_CHARS})?"
)
_QUERY_RE = re.compile(_QUERY_CHARS)
_PERCENT_RE = re.compile(r"%(?![0-9A-F]{2})|%[0-9A-F]{2}")
# Escapes that would let a path segment become a separator or a dot segment
# (or be decoded twice) after the allow-list has been checked.
_FORBIDDEN_PATH_ESCAPES = frozenset({"%2F", "%5C", "%2E", "%25", "%3B", "%00"})
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    path: str
    query: str

    @property
    def without_scheme(self) -> str:
        return self.url[len("https://") :]

    @property
    def endpoint(self) -> str:
        return self.path[1:]


def _escape_problem(part: str, where: str, forbidden: frozenset[str]) -> str | None:
    for escape in _PERCENT_RE.findall(part):
        if len(escape) != 3:
            return f"malformed percent-escape in the {where}"
        if escape in forbidden:
            return f"encoded separator in the {where}"
        decoded = chr(int(escape[1:], 16))
        if decoded in _UNRESERVED:
            return f"needlessly encoded character in the {where}"
    return None


_PATH_RE = re.compile(r"[A-Za-z0-9\-._~%:@+,=!$*'()/]*")


def path_problem(path: str) -> str | None:
    """Why a path (without its leading slash) is not canonical, or ``None``.

    The rules of a target URL's path, for every face that builds an upstream
    URL from a client's path or a configured id: plain URL-safe segments, no
    dot or empty segments, no encoded separators, no needless escapes.
    """
    if _PATH_RE.fullmatch(path) is None:
        return "the path has characters that are not allowed"
    segments = path.split("/")
    for segment in segments:
        if segment in (".", ".."):
            return "dot segments are not allowed"
        if not segment and len(segments) > 1:
            return "empty path segments are not allowed"
    if "%" in path:
        return _escape_problem(path, "path", _FORBIDDEN_PATH_ESCAPES)
    return None


def query_problem(query: str) -> str | None:
    """Why a query string (without its ``?``) would not reach upstream as is, or ``None``.

    The characters of a target URL's query, with well-formed escapes, so
    that requests sends exactly the string that was checked.
    """
    if _QUERY_RE.fullmatch(query) is None:
        return "the query has characters that are not allowed"
    return _escape_problem(query, "query", frozenset()) if "%" in query else None


def parse_target_url(value: str) -> Target:
    """Split and vet a target URL; raise a 412 ``ProxyError`` if it is not canonical."""
    if len(value) > MAX_TARGET_URL_LENGTH:
        raise errors.invalid_target_url("too long")
    if not value.startswith("https://"):
        raise errors.invalid_target_url("only https URLs are allowed")
    if "," in value:
        # WSGI servers join a repeated header with commas, so a raw comma is
        # how a second x-fal-target-url hides inside the first; fal's URLs
        # have none, and an encoded one (%2C) still passes.
        raise errors.invalid_target_url("more than one target URL (or an unencoded comma)")
    match = _TARGET_RE.fullmatch(value)
    if match is None:
        authority = value[8:].split("/", 1)[0].split("?", 1)[0]
        if "@" in authority:
            raise errors.invalid_target_url("userinfo is not allowed")
        if ":" in authority:
            raise errors.invalid_target_url("explicit ports are not allowed")
        raise errors.invalid_target_url("not a canonical https URL")
    host, path = match["host"], match["path"]
    query = match["query"] or ""
    if not is_fal_host(host):
        raise errors.invalid_target_url("host is not one of fal's")
    problem = path_problem(path[1:])
    if problem:
        raise errors.invalid_target_url(problem)
    problem = _escape_problem(query, "query", frozenset()) if "%" in query else None
    if problem:
        raise errors.invalid_target_url(problem)
    return Target(url=value, host=host, path=path, query=query)


_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def is_header_value(value: str) -> bool:
    """Printable ASCII without edge whitespace: a credential that is safe to send.

    requests would refuse anything else too, but with the value (a key) in
    its error message; checking first keeps the key out of every log line.
    """
    return _HEADER_VALUE.fullmatch(value) is not None


def is_json_media_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def has_body(request: flask.Request) -> bool:
    declared = request.content_length
    return (declared is not None and declared > 0) or (
        declared is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )


def read_body(request: flask.Request, limit: int, chunk_size: int = 65536) -> bytes | None:
    """Read the body, at most ``limit`` bytes, exactly as received.

    The declared length is judged before a byte is read, and a body without
    one is read in chunks and abandoned as soon as it passes the limit, so an
    oversized upload never sits in memory whole. The bytes are returned as
    received: re-serialising would change what the caller signed or hashed.
    """
    if not has_body(request):
        return None
    declared = request.content_length
    if declared is not None and declared > limit:
        raise errors.payload_too_large(limit)
    stream = request.stream
    if declared is not None:
        body = stream.read(declared)
        if len(body) != declared:
            raise errors.incomplete_body()
        return body
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(chunk_size, limit + 1 - size))
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise errors.payload_too_large(limit)
        parts.append(chunk)
    return b"".join(parts) or None


def read_json_body(request: flask.Request, limit: int) -> bytes | None:
    """The body, if any, once it is known to be strict JSON within ``limit`` bytes."""
    if not has_body(request):
        return None
    if not is_json_media_type(request.headers.get("Content-Type", "")):
        raise errors.unsupported_media_type()
    body = read_body(request, limit)
    if body is not None:
        check_json(body)
    return body
