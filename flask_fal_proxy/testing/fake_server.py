"""The life cycle every fake shares: a threaded server on loopback that records calls.

A fake is a real HTTP server, not a mock, so the proxy's streaming, header
and connection handling run as they do against the provider; the proxy
reaches it through ``LoopbackAdapter`` with the provider's real URL.
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

__all__ = ["FakeServer", "RecordedCall", "json_response"]

_Fake = TypeVar("_Fake", bound="FakeServer")


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


def json_response(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


class FakeServer:
    """Serve ``dispatch`` on ``host:port`` in a daemon thread; record every call in ``calls``."""

    thread_name = "fake-provider"

    def __init__(self, key: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.key = key
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
        body = request.get_data()
        if not self.records(request):
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
        return self.dispatch(request, body)(environ, start_response)

    def dispatch(self, request: Request, body: bytes) -> Response:
        raise NotImplementedError
