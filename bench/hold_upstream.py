"""A fal that takes its time: each call is answered after the seconds its path names.

``POST /bench/hold/<seconds>`` reads the request and answers the usual JSON
that many seconds later on the same keep-alive connection, like a
synchronous ``fal.run`` call holding the connection for a whole generation;
``GET /bench/sse?n=<events>&interval=<seconds>`` writes one event per
interval carrying the time it was written. A result carries
``x-fal-billable-units: 1``, as fal's do, for proxies that meter spend.
Without ``Authorization: Key <key>`` it answers 401, so a proxy that does
not add the key cannot be timed.

It is asyncio protocols rather than a framework because it must hold
thousands of connections in one process while costing the proxies under
test as little of the machine's two cores as possible; nginx cannot delay an
answer. It runs in its own process so its timing is not the harness's.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from urllib.parse import parse_qs, urlsplit

_HEAD_LIMIT = 64 * 1024


class _Held(asyncio.Protocol):
    def __init__(self, key: str, answer: bytes) -> None:
        self.auth = f"Key {key}"
        self.answer = answer
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > _HEAD_LIMIT and self.transport:
                self.transport.close()
            return
        head = self.buffer[:end].decode("latin-1")
        lines = head.split("\r\n")
        length = 0
        authorized = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "authorization":
                authorized = value.strip() == self.auth
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        target = lines[0].split(" ")[1]
        path = urlsplit(target).path
        self.busy = True
        loop = asyncio.get_running_loop()
        if not authorized:
            self._answer(b"401 Unauthorized", b'{"detail":"Invalid key"}')
        elif path.startswith("/bench/hold/"):
            loop.call_later(float(path.rsplit("/", 1)[1]), self._answer, b"200 OK", self.answer)
        elif path == "/bench/sse":
            params = parse_qs(urlsplit(target).query)
            count = int(params.get("n", ["20"])[0])
            interval = float(params.get("interval", ["0.1"])[0])
            self._stream(count, interval)
        else:
            self._answer(b"404 Not Found", b'{"detail":"Not found"}')

    def _answer(self, status: bytes, body: bytes) -> None:
        if not self.transport:
            return
        billed = b"x-fal-billable-units: 1\r\n" if status.startswith(b"200") else b""
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n" + billed
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.busy = False
        if self.buffer:
            self._next()

    def _stream(self, count: int, interval: float) -> None:
        assert self.transport
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        start = loop.time()

        def event(seq: int) -> None:
            if not self.transport:
                return
            if seq == count:
                self.transport.close()
                return
            data = json.dumps({"seq": seq, "sent": time.time()})
            self.transport.write(f"data: {data}\n\n".encode())
            loop.call_at(start + (seq + 1) * interval, event, seq + 1)

        event(0)


async def _main(port: int, key: str, answer: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Held(key, answer), "127.0.0.1", port, backlog=16384
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(_main(int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()))
