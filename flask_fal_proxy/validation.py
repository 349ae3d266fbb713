"""Checks on what the browser sent, before anything leaves the server.

The target URL is accepted only in a narrow canonical form: lowercase
``https://`` scheme, a lowercase fal host name with no port and no userinfo,
a path of plain segments and a query of URL-safe characters. Anything an HTTP
library, a CDN or fal's router could rewrite (dot segments, encoded slashes
or dots, doubled slashes, backslashes, unicode, uppercase hosts) is refused,
so the string the policy matched is the string that goes on the wire.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import errors
from .policy import is_fal_host

if TYPE_CHECKING:
    import flask

__all__ = ["Target", "parse_target_url", "read_json_body"]

MAX_TARGET_URL_LENGTH = 8192

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_TARGET_RE = re.compile(
    rf"https://(?P<host>{_LABEL}(?:\.{_LABEL})+)"
    r"(?P<path>/[A-Za-z0-9\-._~%:@+,=!$*'()/]*)"
    r"(?P<query>\?[A-Za-z0-9\-._~%:@+,=!$*'()/?&;]*)?"
)
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


def _check_escapes(part: str, where: str, forbidden: frozenset[str]) -> None:
    for escape in _PERCENT_RE.findall(part):
        if len(escape) != 3:
            raise errors.invalid_target_url(f"malformed percent-escape in the {where}")
        if escape in forbidden:
            raise errors.invalid_target_url(f"encoded separator in the {where}")
        decoded = chr(int(escape[1:], 16))
        if decoded in _UNRESERVED:
            raise errors.invalid_target_url(f"needlessly encoded character in the {where}")


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
    segments = path[1:].split("/")
    for segment in segments:
        if segment in (".", ".."):
            raise errors.invalid_target_url("dot segments are not allowed")
        if not segment and len(segments) > 1:
            raise errors.invalid_target_url("empty path segments are not allowed")
    if "%" in path:
        _check_escapes(path, "path", _FORBIDDEN_PATH_ESCAPES)
    if "%" in query:
        _check_escapes(query, "query", frozenset())
    return Target(url=value, host=host, path=path, query=query)


def is_json_media_type(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def read_json_body(request: flask.Request, limit: int, chunk_size: int = 65536) -> bytes | None:
    """Read the body (at most ``limit`` bytes) and make sure it is JSON.

    The declared length is judged before a byte is read, and a body without
    one is read in chunks and abandoned as soon as it passes the limit, so an
    oversized upload never sits in memory whole. The bytes are returned as
    received: re-serialising would change what the caller signed or hashed.
    """
    declared = request.content_length
    has_body = (declared is not None and declared > 0) or (
        declared is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )
    if not has_body:
        return None
    if not is_json_media_type(request.headers.get("Content-Type", "")):
        raise errors.unsupported_media_type()
    if declared is not None and declared > limit:
        raise errors.payload_too_large(limit)
    stream = request.stream
    if declared is not None:
        body = stream.read(declared)
    else:
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
        body = b"".join(parts)
        if not body:
            return None
    if declared is not None and len(body) != declared:
        raise errors.ProxyError(
            400, "incomplete_body", "The request body is shorter than its Content-Length."
        )
    try:
        json.loads(body)
    except ValueError:
        raise errors.invalid_json() from None
    return body
