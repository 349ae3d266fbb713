"""The life cycle every fake shares: a threaded server on loopback that records calls.

A fake is a real HTTP server, not a mock, so the proxy's streaming, header
and connection handling run as they do against the provider; the proxy
reaches it through ``LoopbackAdapter`` with the provider's real URL.

A fake also runs for hours behind ``fal-openai-proxy --offline`` and demo
apps, so what it remembers is bounded: the last ``max_calls`` calls, and
nothing that grows with the bodies it was sent beyond them. ``max_calls=0``
records nothing.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from .loopback import loopback_session

__all__ = ["DEFAULT_MAX_CALLS", "FakeServer", "RecordedCall", "json_response"]

_Fake = TypeVar("_Fake", bound="FakeServer")

DEFAULT_MAX_CALLS = 100


@dataclass
class RecordedCall:
    method: str
    host: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def keep_last(items: list[Any], limit: int) -> None:
    """Drop the oldest of ``items`` beyond ``limit``."""
    if len(items) > limit:
        del items[: len(items) - limit]


def keep_newest(entries: dict[Any, Any], limit: int) -> None:
    """Drop the oldest-inserted of ``entries`` beyond ``limit``."""
    while len(entries) > limit:
        del entries[next(iter(entries))]


def json_response(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


class FakeServer:
    """Serve ``dispatch`` on ``host:port`` in a daemon thread; keep the last calls in ``calls``."""

    thread_name = "fake-provider"

    def __init__(
        self,
        key: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_calls: int = DEFAULT_MAX_CALLS,
    ) -> None:
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
            raise ValueError("max_calls must be a whole number, 0 or more")
        self.key = key
        self.max_calls = max_calls
        self.calls: list[RecordedCall] = []
        self._lock = threading.Lock()
        self._server = make_server(host, port, self._wsgi, threaded=True)
        self.host = host
        self.port = self._server.server_port
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self: _Fake) -> _Fake:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self: _Fake) -> _Fake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def session(self) -> requests.Session:
        """A session like the proxy's default one, with every https call routed here."""
        return loopback_session(self.port, self.host)

    def records(self, request: Request) -> bool:
        """Whether a call belongs in ``calls`` (a fake's own side doors do not)."""
        return True

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        # Not cached on the request: the server keeps a connection's last environ, and
        # with it the request, until the next one arrives on that connection.
        body = request.get_data(cache=False)
        if not self.max_calls or not self.records(request):
            return self.dispatch(request, body)(environ, start_response)
        with self._lock:
            self.calls.append(
                RecordedCall(
                    request.method,
                    request.host.split(":")[0],
                    request.path,
                    request.query_string.decode(),
                    dict(request.headers),
                    body,
                )
            )
            keep_last(self.calls, self.max_calls)
        return self.dispatch(request, body)(environ, start_response)

    def dispatch(self, request: Request, body: bytes) -> Response:
        raise NotImplementedError
