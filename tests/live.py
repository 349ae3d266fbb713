"""Live parts for wire-level tests: a scripted upstream and a real proxy server, on 127.0.0.1."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flask
from werkzeug.serving import make_server

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.relay import default_session
from flask_fal_proxy.testing import LoopbackAdapter


@dataclass
class RawRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[0] if values else None

    @property
    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


Responder = Callable[[RawRequest, socket.socket], None]


def json_reply(
    status: int = 200, body: bytes = b'{"ok":true}', headers: list[tuple[str, str]] | None = None
) -> Responder:
    def respond(request: RawRequest, sock: socket.socket) -> None:
        lines = [
            f"HTTP/1.1 {status} X",
            f"Content-Length: {len(body)}",
            "Content-Type: application/json",
        ]
        lines += [f"{k}: {v}" for k, v in headers or []]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    return respond


@dataclass
class Upstream:
    """An HTTP/1.1 server that records raw requests and answers with a script."""

    respond: Responder = field(default_factory=json_reply)
    requests: list[RawRequest] = field(default_factory=list)
    connections: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        upstream = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream.connections += 1
                reader = self.request.makefile("rb")
                try:
                    while True:
                        request = _read_request(reader)
                        if request is None:
                            return
                        upstream.requests.append(request)
                        upstream.respond(request, self.request)
                except (OSError, ValueError) as exc:
                    upstream.errors.append(exc)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def session(self) -> Any:
        session = default_session()
        session.mount("https://", LoopbackAdapter(self.port))
        return session


def _read_request(reader: Any) -> RawRequest | None:
    line = reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    while True:
        raw = reader.readline().decode("latin-1").rstrip("\r\n")
        if not raw:
            break
        name, value = raw.split(":", 1)
        headers.append((name, value.strip()))
    lookup = {k.lower(): v for k, v in headers}
    body = b""
    if "content-length" in lookup:
        body = reader.read(int(lookup["content-length"]))
    elif lookup.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(reader.readline().split(b";")[0], 16)
            if size == 0:
                reader.readline()
                break
            body += reader.read(size)
            reader.readline()
    return RawRequest(method, target, headers, body)


class ProxyServer:
    """The blueprint in a real threaded WSGI server, so streaming is tested end to end."""

    def __init__(self, upstream: Upstream, fal_key: str, **overrides: Any) -> None:
        app = flask.Flask("live-proxy")
        app.config["FAL_KEY"] = fal_key
        overrides.setdefault("session", upstream.session())
        app.register_blueprint(create_blueprint(**overrides))
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/fal/proxy"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ProxyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
