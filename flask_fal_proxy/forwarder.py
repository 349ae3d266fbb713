"""fal's rules on top of the shared relay: which headers reach fal, and the target URL.

Everything provider-neutral (preparing the call, comparing the URL,
streaming the answer) is in ``relay``; this module adds what only fal's
protocol has: the ``x-fal-*`` headers that ``@fal-ai/client`` sends and
that fal reads, the ``x-fal-target-url`` header that must not travel on,
and the ``x-fal-client-proxy`` marker fal uses to recognise proxied calls.
"""

from __future__ import annotations

from collections.abc import Iterable

from werkzeug.wrappers import Response

from ._version import __version__
from .policy import TARGET_URL_HEADER
from .relay import Relay, connection_tokens, default_session, pick_headers
from .validation import Target

__all__ = ["Forwarder", "connection_tokens", "default_session", "outbound_headers"]

CLIENT_PROXY_HEADER = f"flask-fal-proxy/{__version__}"
_NOT_FORWARDED = frozenset({TARGET_URL_HEADER})


def outbound_headers(
    incoming: Iterable[tuple[str, str]],
    authorization: str,
    extra: Iterable[str] = (),
    connection_tokens: set[str] | frozenset[str] = frozenset(),
) -> dict[str, str]:
    """The headers fal receives: a short allow-list, never the browser's credentials."""
    headers = pick_headers(
        incoming, tuple(extra), connection_tokens, prefix="x-fal-", skip=_NOT_FORWARDED
    )
    headers["authorization"] = authorization
    headers["x-fal-client-proxy"] = CLIENT_PROXY_HEADER
    return headers


class Forwarder(Relay):
    """The relay as the fal route uses it: a vetted ``Target`` in, fal's answer out."""

    def forward(  # type: ignore[override]
        self, method: str, target: Target, headers: dict[str, str], body: bytes | None
    ) -> Response:
        return self.relay(self.send(method, target.url, headers, body), method)
