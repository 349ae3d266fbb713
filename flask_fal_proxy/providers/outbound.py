"""What a provider receives, derived from the client's request and nothing else.

The path is taken from the request line as the client sent it, not from
Flask's routed (percent-decoded) path: ``v1%2Fmessages`` must be judged as
the client wrote it, and the string judged is the string sent. Headers are
an allow-list, so a client's own key headers, cookies and hop-by-hop headers
never travel; the key header is set here, once. Bodies are bytes as
received: JSON is checked, never re-serialised, and uploads (multipart,
audio) pass through untouched under the same size cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import quote

from .. import errors
from ..relay import pick_headers
from ..validation import (
    has_body,
    is_json_media_type,
    path_problem,
    query_problem,
    read_json_body,
)
from ..validation import read_body as read_capped_body

if TYPE_CHECKING:
    import flask

__all__ = ["provider_request_headers", "read_body", "requested_path", "requested_query"]

# Upload formats passed through byte for byte (ElevenLabs speech-to-text,
# OpenAI audio); anything else that is not JSON is refused with a 415.
_UPLOAD_TYPES = ("multipart/form-data", "application/octet-stream")


def requested_path(request: flask.Request, route: str) -> str:
    """The path after ``route`` exactly as the client sent it; 400 unless canonical."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:
        # A server that keeps no raw URI: the decoded path is all there is,
        # and re-encoding it is what will be sent, so that is what is judged.
        raw = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/")
    raw = raw.split("?", 1)[0]
    if "://" in raw:
        # absolute-form request target: http://host/path
        raw = "/" + raw.split("://", 1)[1].partition("/")[2]
    prefix = quote(request.script_root + route, safe="/") + "/"
    if not raw.startswith(prefix):
        raise errors.invalid_path("it is not the route's path as routed")
    path = raw[len(prefix) :]
    problem = path_problem(path) if path else "it is empty"
    if problem:
        raise errors.invalid_path(problem)
    return path


def requested_query(request: flask.Request) -> str:
    """The query string unchanged; 400 if requests could send it differently."""
    query = request.environ.get("QUERY_STRING", "")
    problem = query_problem(query) if query else None
    if problem:
        raise errors.invalid_path(problem)
    return query


def provider_request_headers(
    incoming: Iterable[tuple[str, str]],
    auth_header: str,
    credential: str,
    forwarded: tuple[str, ...],
    connection_tokens: set[str] | frozenset[str] = frozenset(),
) -> dict[str, str]:
    """The headers a provider receives: a short allow-list and the server's key."""
    headers = pick_headers(incoming, forwarded, connection_tokens)
    headers[auth_header] = credential
    return headers


def read_body(request: flask.Request, limit: int) -> bytes | None:
    """The body as received, within ``limit``: checked JSON, or an upload passed through."""
    if not has_body(request):
        return None
    content_type = request.headers.get("Content-Type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if is_json_media_type(content_type):
        return read_json_body(request, limit)
    if media_type in _UPLOAD_TYPES or media_type.startswith("audio/"):
        return read_capped_body(request, limit)
    raise errors.unsupported_media_type("application/json, multipart/form-data or audio")
