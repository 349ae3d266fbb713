"""The fal every proxy under test talks to: nginx, with one fixed answer, on 127.0.0.1.

nginx costs the machine less per call than any proxy measured, so the
upstream alone is the floor that *added* latency is counted from. It answers
200 only to ``Authorization: Key <bench key>``, so a proxy that does not add
the server's key is caught before it is timed. A result carries
``x-fal-billable-units: 1`` as fal's do, so a proxy that meters spend
settles every call. ``/bench/big`` is a large file for the memory probe and
``/bench/sse`` an event stream relayed from ``sse_upstream.py``.
"""

from __future__ import annotations

import http.client
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from processes import BENCH, Started, start

FAL_KEY = "bench-key-0f3a9c"
TARGET = "https://fal.run/fal-ai/fast-sdxl"
FAL_ANSWER = (
    '{"images":[{"url":"https://v3.fal.media/files/bench/out.png","width":1024,'
    '"height":1024,"content_type":"image/png"}],"seed":42,"has_nsfw_concepts":[false],'
    '"prompt":"a lighthouse at dusk, oil painting"}'
)
PROBE_BODY = b'{"prompt":"a lighthouse at dusk, oil painting","image_size":"square_hd","seed":42}'
MIB = 1024 * 1024

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_max_body_size 64m;
    sendfile on;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location = /nginx_status {{ stub_status; }}
        location = /bench/big {{
            if ($http_authorization != "Key {key}") {{ return 401; }}
            root {dir}/www;
            default_type application/octet-stream;
        }}
        location = /bench/sse {{
            if ($http_authorization != "Key {key}") {{ return 401; }}
            proxy_pass http://127.0.0.1:{sse_port};
            proxy_buffering off;
        }}
        location / {{
            default_type application/json;
            if ($http_authorization != "Key {key}") {{
                return 401 '{{"detail":"Invalid key"}}';
            }}
            add_header x-fal-billable-units 1;
            return 200 '{answer}';
        }}
    }}
}}
"""


@dataclass
class Upstream:
    workdir: Path
    port: int
    sse_port: int
    procs: list[Started] = field(default_factory=list)

    def start(self, big_bytes: int) -> None:
        www = self.workdir / "www" / "bench"
        www.mkdir(parents=True)
        with open(www / "big", "wb") as f:
            f.truncate(big_bytes)
        self.procs.append(
            start(
                "sse upstream",
                [sys.executable, str(BENCH / "sse_upstream.py"), str(self.sse_port)],
                self.sse_port,
                self.workdir,
                {},
            )
        )
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=self.workdir,
                port=self.port,
                sse_port=self.sse_port,
                key=FAL_KEY,
                answer=FAL_ANSWER,
            )
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.procs.append(
            start("nginx", [nginx, "-c", str(conf), "-p", str(self.workdir)], self.port,
                  self.workdir, {})
        )

    def counters(self) -> tuple[int, int]:
        """Connections accepted and requests served so far, this query included."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", "/nginx_status")
        text = conn.getresponse().read().decode()
        conn.close()
        accepts, _, requests = text.splitlines()[2].split()
        return int(accepts), int(requests)

    def stop(self) -> None:
        for started in reversed(self.procs):
            started.stop()
