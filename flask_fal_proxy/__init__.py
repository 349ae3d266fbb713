"""flask-fal-proxy: put fal.ai's models behind a Flask route without exposing the key.

The browser runs ``@fal-ai/client`` with ``proxyUrl: "/api/fal/proxy"``; the
blueprint returned by :func:`create_blueprint` checks each call, adds
``Authorization: Key <FAL_KEY>`` and streams fal's answer back. The same
admission path serves the key proxies for other providers
(:func:`create_provider_blueprint`) and an OpenAI-compatible images API over
fal (:func:`create_openai_blueprint`).
"""

from ._version import __version__
from .blueprint import create_blueprint
from .config import ProxyConfig
from .cross_origin import allow_browser_origins
from .errors import ProxyError
from .fal_protocol import DEFAULT_ALLOWED_URL_PATTERNS, DEFAULT_PROXY_ROUTE, TARGET_URL_HEADER
from .openai_compat import create_openai_blueprint
from .providers import create_provider_blueprint
from .rate_limits import limit_proxy_routes

__all__ = [
    "DEFAULT_ALLOWED_URL_PATTERNS",
    "DEFAULT_PROXY_ROUTE",
    "TARGET_URL_HEADER",
    "ProxyConfig",
    "ProxyError",
    "__version__",
    "allow_browser_origins",
    "create_blueprint",
    "create_openai_blueprint",
    "create_provider_blueprint",
    "limit_proxy_routes",
]
