"""Sends one vetted request upstream and streams the answer back; every face uses it.

The transport is a ``requests.Session`` so deployers can mount their own
adapters (retries, pool sizes, an egress proxy) and tests can mount a
loopback one. The request is prepared here rather than by the session, so
nothing the session or the environment carries (cookies, ``.netrc``
credentials, default headers) is merged into a call that holds a key; and
the prepared URL is compared with the vetted one, so a URL that requests or
urllib3 would rewrite is refused instead of sent. The answer is relayed chunk
by chunk as it arrives, which keeps server-sent events and audio live and
memory flat, and the upstream connection is closed the moment the client
goes away rather than drained. A compressed answer is relayed as received,
with its ``Content-Encoding``, never decoded here: a small compressed bomb
costs the proxy no memory, CPU or outbound bandwidth beyond its own size.

What a face decides (which URL, which headers, which header carries the
key) stays in the face; this module knows no provider.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from functools import lru_cache

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_auth_from_url
from werkzeug.datastructures import Headers
from werkzeug.wrappers import Response

from . import errors

__all__ = [
    "HOP_BY_HOP",
    "PASSTHROUGH_REQUEST_HEADERS",
    "Relay",
    "connection_tokens",
    "default_session",
    "pick_headers",
]

logger = logging.getLogger("flask_fal_proxy")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_DROPPED_RESPONSE = HOP_BY_HOP | {"content-length", "set-cookie"}
# read1() returns whatever has arrived, up to this, so events are never held
# for it; larger reads cut per-chunk overhead on big bodies (see bench/).
STREAM_CHUNK_SIZE = 256 * 1024


class _RejectAllCookies(requests.cookies.RequestsCookieJar):
    """A jar that stores nothing: a provider's cookies are not the browser's business."""

    def set_cookie(self, cookie, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


# Shared by every prepared request: it can never hold a cookie, so sharing is safe.
_NO_COOKIES = _RejectAllCookies()

_CACHED_URL_LENGTH = 256


@lru_cache(maxsize=1024)
def _prepare_url(url: str) -> tuple[str, bool]:
    """What requests makes of a URL, and whether it carries credentials.

    Both depend on the string alone, and a page calls the same few endpoint
    URLs over and over, so they are worked out once per URL (more than half of
    what preparing a call still cost) and compared with the vetted URL on
    every call.
    """
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.url, any(get_auth_from_url(prepared.url))


def default_session(pool_maxsize: int | None = None) -> requests.Session:
    """A session for a proxy: no retries, no cookies, no environment, a large pool.

    Retrying is left to the client, which knows which calls are safe to
    repeat; a proxy that retried a POST could run a paid model twice. The
    pool should hold a connection per call in flight, or calls beyond it open
    a connection upstream and drop it afterwards; by default its size is
    ``FAL_PROXY_POOL_MAXSIZE``, which the example gunicorn.conf.py sets from
    the calls a worker holds, else 64.
    """
    if pool_maxsize is None:
        pool_maxsize = int(os.environ.get("FAL_PROXY_POOL_MAXSIZE", "64"))
    session = requests.Session()
    session.trust_env = False
    session.cookies = _RejectAllCookies()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def connection_tokens(headers: Mapping[str, str]) -> set[str]:
    """Header names a ``Connection`` header makes hop-by-hop for this message."""
    value = headers.get("Connection", "")
    return {t.strip().lower() for t in value.split(",") if t.strip()}


# Request headers every face passes on: what the body is, what the client
# accepts, and who it is.
PASSTHROUGH_REQUEST_HEADERS = frozenset({"content-type", "accept", "user-agent"})


_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@lru_cache(maxsize=64)
def _wanted(extra: tuple[str, ...]) -> frozenset[str]:
    return PASSTHROUGH_REQUEST_HEADERS.union(extra)


def pick_headers(
    incoming: Iterable[tuple[str, str]],
    extra: tuple[str, ...] = (),
    connection_tokens: AbstractSet[str] = frozenset(),
    *,
    prefix: str | None = None,
    skip: AbstractSet[str] = frozenset(),
) -> dict[str, str]:
    """The client's headers a face forwards: an allow-list, lower-cased, repeats joined.

    Allowed are the pass-through headers, the face's ``extra`` ones and, if
    given, those starting with ``prefix``; never one the client's own
    ``Connection`` header names, nor one in ``skip``. The face then adds
    its credential header itself.
    """
    wanted = _wanted(extra)
    headers: dict[str, str] = {}
    for name, value in incoming:
        lower = name.lower()
        if lower in connection_tokens or lower in skip:
            continue
        if lower in wanted or (prefix is not None and lower.startswith(prefix)):
            if _CONTROL_CHARACTER.search(value):
                # requests refuses only CR and LF; a NUL or DEL would reach the provider.
                raise errors.invalid_header()
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
    return headers


class Relay:
    """One outbound call per inbound request, over a shared session.

    ``upstream`` names the provider in log lines and error messages;
    ``credential_header`` is the header that carries the key, checked after
    preparation to be exactly what the face set.
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        connect_timeout: float,
        read_timeout: float,
        upstream: str = "fal",
        credential_header: str = "authorization",
        chunk_size: int = STREAM_CHUNK_SIZE,
    ) -> None:
        self.session = session if session is not None else default_session()
        self.timeout = (connect_timeout, read_timeout)
        self.upstream = upstream
        self.credential_header = credential_header
        self.chunk_size = chunk_size

    def prepare(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> requests.PreparedRequest:
        # Request.prepare() minus its cookie-jar and form-encoding steps, which
        # do nothing for a bytes body and no cookies but cost more than the rest
        # of it. URL, header and auth preparation still run: the checks below
        # compare their output with what was vetted.
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        # Long URLs (queue ids, query strings) skip the cache so that callers
        # cannot fill it with megabytes of one-off URLs.
        prepare_url = _prepare_url if len(url) <= _CACHED_URL_LENGTH else _prepare_url.__wrapped__
        prepared.url, has_userinfo = prepare_url(url)
        try:
            prepared.prepare_headers(headers)
        except requests.exceptions.InvalidHeader:
            # A client's header value requests will not send (a control
            # character, leading whitespace); its message would quote the value.
            raise errors.invalid_header() from None
        prepared._cookies = _NO_COOKIES
        if body:
            prepared.body = body
            prepared.headers["Content-Length"] = str(len(body))
        elif method not in ("GET", "HEAD"):
            prepared.headers["Content-Length"] = "0"
        if has_userinfo:
            prepared.prepare_auth(None, url)
        if prepared.url != url:
            raise errors.url_would_be_altered("URL would be altered before sending")
        credential = self.credential_header
        if prepared.headers.get(credential) != headers.get(credential):
            raise errors.url_would_be_altered("URL would alter the credentials")
        return prepared

    def open(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        timeout: tuple[float, float] | None = None,
    ) -> requests.Response:
        """The upstream's answer with its body unread; requests' own exceptions on failure.

        For callers that read the answer themselves and tell failures apart
        (a queue submit that may or may not have reached the provider);
        ``send`` turns them into the proxy's 502/504.
        """
        prepared = self.prepare(method, url, headers, body)
        return self.session.send(
            prepared, stream=True, timeout=timeout or self.timeout, allow_redirects=False
        )

    def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> requests.Response:
        """The upstream's answer with its body still unread; 502/504 when there is none."""
        host = url.split("/", 3)[2] if url.count("/") >= 2 else url
        try:
            return self.open(method, url, headers, body)
        except requests.Timeout as exc:
            logger.warning(
                "%s timed out: %s %s (%s)", self.upstream, method, host, type(exc).__name__
            )
            raise errors.upstream_timeout(self.upstream) from None
        except requests.RequestException as exc:
            logger.warning(
                "%s unreachable: %s %s (%s)", self.upstream, method, host, type(exc).__name__
            )
            raise errors.upstream_unreachable(self.upstream) from None

    def forward(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response:
        return self.relay(self.send(method, url, headers, body), method)

    def relay(self, upstream: requests.Response, method: str) -> Response:
        raw = upstream.raw
        response_headers = Headers()
        tokens = connection_tokens(upstream.headers)
        dropped = _DROPPED_RESPONSE | tokens if tokens else _DROPPED_RESPONSE
        for name, value in raw.headers.items():
            lower = name.lower()
            if lower not in dropped and not (
                lower == "content-encoding" and value.strip().lower() == "identity"
            ):
                response_headers.add(name, value)
        bodyless = method == "HEAD" or upstream.status_code in (204, 304)
        body: Iterable[bytes] = () if bodyless else self._stream(upstream)
        if bodyless:
            upstream.close()
        typed = "content-type" in response_headers
        response = Response(
            body, status=upstream.status_code, headers=response_headers, direct_passthrough=True
        )
        if not typed:
            del response.headers["Content-Type"]
        return response

    def _stream(self, upstream: requests.Response) -> Iterator[bytes]:
        raw = upstream.raw
        read = getattr(raw, "read1", None) or raw.read
        complete = False
        try:
            while True:
                chunk = read(self.chunk_size, decode_content=False)
                if not chunk:
                    complete = True
                    return
                yield chunk
        except Exception as exc:
            # Headers are already sent: re-raising makes the server cut the
            # connection, so the client sees a broken stream, not a short one.
            logger.warning("%s stream interrupted (%s)", self.upstream, type(exc).__name__)
            raise
        finally:
            if complete:
                raw.release_conn()
            else:
                raw.close()
                raw.release_conn()
