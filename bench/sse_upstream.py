"""A fal-like event stream for the latency probe: one event every interval.

Each event carries the wall-clock time at which it was written, so the
client can tell how long every proxy held it. It runs in its own process so
that its timing does not share a GIL with the harness that measures it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import parse_qs, urlsplit


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        target = head.split(b" ", 2)[1].decode()
        params = parse_qs(urlsplit(target).query)
        count = int(params.get("n", ["20"])[0])
        interval = float(params.get("interval", ["0.1"])[0])
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        for seq in range(count):
            event = json.dumps({"seq": seq, "sent": time.time()})
            writer.write(f"data: {event}\n\n".encode())
            await writer.drain()
            await asyncio.sleep(interval)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1])))
