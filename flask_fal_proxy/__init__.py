"""flask-fal-proxy: put fal.ai's models behind a Flask route without exposing the key.

The browser runs ``@fal-ai/client`` with ``proxyUrl: "/api/fal/proxy"``; the
blueprint returned by :func:`create_blueprint` checks each call, adds
``Authorization: Key <FAL_KEY>`` and streams fal's answer back.
"""

from ._version import __version__
from .blueprint import create_blueprint
from .config import (
    DEFAULT_ALLOWED_URL_PATTERNS,
    DEFAULT_PROXY_ROUTE,
    TARGET_URL_HEADER,
    ProxyConfig,
)
from .errors import ProxyError
from .forwarder import Forwarder
from .relay import Relay, default_session

__all__ = [
    "DEFAULT_ALLOWED_URL_PATTERNS",
    "DEFAULT_PROXY_ROUTE",
    "TARGET_URL_HEADER",
    "Forwarder",
    "ProxyConfig",
    "ProxyError",
    "Relay",
    "__version__",
    "create_blueprint",
    "default_session",
]
