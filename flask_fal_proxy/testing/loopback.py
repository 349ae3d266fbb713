"""A requests transport that delivers https calls to a server on loopback.

The proxy under test vets and sends the real provider URL (``https://fal.run/...``,
``https://api.anthropic.com/...``) with its real ``Host``; only the last hop
is redirected to a fake on 127.0.0.1, so nothing in the proxy is mocked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

__all__ = ["LoopbackAdapter", "loopback_session"]


class LoopbackAdapter(HTTPAdapter):
    """Deliver every request to ``http://host:port`` whatever its URL says."""

    def __init__(self, port: int, host: str = "127.0.0.1", **kwargs: Any) -> None:
        self.loopback = (host, port)
        super().__init__(**kwargs)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):  # type: ignore[no-untyped-def]
        host, port = self.loopback
        return self.poolmanager.connection_from_host(host, port, scheme="http")

    def get_connection(self, url, proxies=None):  # type: ignore[no-untyped-def]
        host, port = self.loopback
        return self.poolmanager.connection_from_host(host, port, scheme="http")

    def cert_verify(self, conn, url, verify, cert):  # type: ignore[no-untyped-def]
        return None

    def request_url(self, request, proxies):  # type: ignore[no-untyped-def]
        return request.path_url

    def add_headers(self, request, **kwargs):  # type: ignore[no-untyped-def]
        request.headers.setdefault("Host", urlsplit(request.url).netloc)


def loopback_session(port: int, host: str = "127.0.0.1") -> requests.Session:
    """The proxy's default session with every https call delivered to ``host:port``.

    For a fake fal running in another process (a test that serves the app
    under gunicorn keeps the fake in its own process to read ``calls``).
    """
    from ..relay import default_session

    session = default_session()
    session.mount("https://", LoopbackAdapter(port, host, pool_maxsize=64, max_retries=0))
    return session
