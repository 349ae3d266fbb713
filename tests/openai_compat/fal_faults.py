"""fal on a raw socket, for the facade's fault tests: each stage of a job can cut or stall.

fal's queue (submit, status, result, cancel), its OpenAPI documents and its
media host, all behind one port on 127.0.0.1 and told apart by ``Host`` and
path, as ``LoopbackAdapter`` delivers them. A raw socket, not an HTTP
framework, so an answer can stop after its headers: ``cut`` sends the
headers and part of the body then closes, ``stall`` sends as much then goes
silent until the facade hangs up. Request bodies are read and dropped, only
counted, so a test measuring the facade's memory measures the facade's
alone. Every answer closes its connection.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import unquote

from faults.faultkit import UpstreamConn, closing_response, response, wait_peer_close
from support import LoopbackListener

from flask_fal_proxy.testing.fal_openapi import openapi_document, png_image

STAGES = ("submit", "status", "result", "cancel", "schema", "media")


@dataclass
class Seen:
    stage: str
    method: str
    path: str
    body_bytes: int
    at: float


def _stage(method: str, host: str, path: str) -> str:
    if host == "fal.ai":
        return "schema"
    if host.endswith("fal.media"):
        return "media"
    if method == "POST":
        return "submit"
    if path.endswith("/status"):
        return "status"
    if path.endswith("/cancel"):
        return "cancel"
    return "result"


class FaultyFal(LoopbackListener):
    """fal whose ``faults[stage]`` (``"cut"``, ``"stall"`` or ``"error"``) misbehaves."""

    def __init__(self) -> None:
        super().__init__(backlog=128)
        self.faults: dict[str, str] = {}
        self.seen: list[Seen] = []
        self._counts: dict[str, int] = {}
        self.media_delay = 0.0
        self.media_image = png_image()
        self.media_in_flight = 0
        self.media_most_at_once = 0
        self._lock = threading.Lock()
        self._start_accepting()

    def stages(self, stage: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.stage == stage]

    def _serve(self, sock: socket.socket) -> None:
        try:
            with sock:
                self._answer(sock)
        except OSError:
            pass

    def _answer(self, sock: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target = lines[0].split(" ")[:2]
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        host = fields.get("host", "").split(":")[0]
        path, _, query = target.partition("?")
        length = int(fields.get("content-length", "0"))
        # Small bodies are kept to read num_images; big ones only counted.
        kept = bytearray(rest[:65536])
        received = len(rest)
        buffer = bytearray(1 << 20)
        while received < length:
            n = sock.recv_into(buffer)
            if not n:
                break
            if len(kept) < 65536:
                kept += buffer[: min(n, 65536 - len(kept))]
            received += n
        stage = _stage(method, host, path)
        with self._lock:
            self.seen.append(Seen(stage, method, path, received, time.monotonic()))
        fault = self.faults.get(stage)
        if fault in ("cut", "stall"):
            kind = "image/png" if stage == "media" else "application/json"
            partial = b'{"request_id":"' if kind == "application/json" else png_image()[:20]
            sock.sendall(
                response("200 OK", [("Content-Type", kind), ("Content-Length", "4096")]) + partial
            )
            if fault == "cut":
                sock.shutdown(socket.SHUT_RDWR)
                return
            wait_peer_close(sock, UpstreamConn(), limit=30)
            return
        if fault == "error":
            sock.sendall(closing_response("500 Internal Server Error", "application/json", b"{}"))
            return
        sock.sendall(self._normal(stage, path, query, bytes(kept)))

    def _normal(self, stage: str, path: str, query: str, body: bytes) -> bytes:
        def answer(data: object) -> bytes:
            return closing_response("200 OK", "application/json", json.dumps(data).encode())

        if stage == "schema":
            endpoint = unquote(query.partition("endpoint_id=")[2].split("&")[0])
            return answer(openapi_document(endpoint))
        if stage == "media":
            with self._lock:
                self.media_in_flight += 1
                self.media_most_at_once = max(self.media_most_at_once, self.media_in_flight)
            time.sleep(self.media_delay)
            with self._lock:
                self.media_in_flight -= 1
            return closing_response("200 OK", "image/png", self.media_image)
        if stage == "submit":
            app = "/".join(path.strip("/").split("/")[:2])
            request_id = str(uuid.uuid4())
            count = _num_images(body)
            with self._lock:
                self._counts[request_id] = count
            return answer({"request_id": request_id, "status": "IN_QUEUE", "app": app})
        if stage == "status":
            return answer({"status": "COMPLETED"})
        if stage == "cancel":
            return closing_response(
                "202 Accepted", "application/json", b'{"status":"CANCELLATION_REQUESTED"}'
            )
        request_id = path.rstrip("/").rsplit("/", 1)[1]
        count = self._counts.get(request_id, 1)
        images = [
            {"url": f"https://v3.fal.media/files/fake/{request_id}-{i}.png"} for i in range(count)
        ]
        return answer({"images": images, "prompt": "p"})


def _num_images(body: bytes) -> int:
    match = re.search(rb'"num_images":\s*(\d+)', body)
    return int(match.group(1)) if match else 1
