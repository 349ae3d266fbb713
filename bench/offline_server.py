"""What ``fal-openai-proxy --offline`` holds up to: stalled uploads, and one big edit's memory.

Someone trying the package runs ``--offline`` first, so it should behave like
the server it stands in for. Two figures, one worker:

- stall: open ``--stalled`` uploads that send their headers and stop, then
  time a ``/v1/models`` call and a generation beside them;
- edit: the summed RSS of master and worker before and after one edit of
  four images of just under 16 MiB with ``n=10`` (three fal jobs).

    .venv/bin/python bench/offline_server.py
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/offline_server.py   # compare
"""

from __future__ import annotations

import argparse
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import openai

MiB = 1 << 20


def _rss_mib(pid: int) -> float:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    total = 0
    for process in [pid, *map(int, children.split())]:
        with open(f"/proc/{process}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total / 1024


def _start(workdir: str) -> tuple[subprocess.Popen[bytes], int, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FAL_KEY", "AI_KEYS", "GUNICORN", "SUPPORTED_MODELS"))
    }
    env.update(WEB_CONCURRENCY="1", CUSTOM_ACCESS_KEY="bench")
    log = os.path.join(workdir, "server.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask_fal_proxy.openai_compat", "--offline", "--port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = open(log).read()
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if found and "Booting worker" in text:
            time.sleep(1.0)
            return proc, int(found.group(1)), log
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(open(log).read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stalled", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="offline-bench-") as workdir:
        proc, port, log = _start(workdir)
        try:
            worker = re.search(r"Using worker: (\w+)", open(log).read())
            print(f"worker class: {worker.group(1) if worker else '?'}")
            api = openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key="bench",
                max_retries=0,
                timeout=args.timeout,
                http_client=openai.DefaultHttpxClient(trust_env=False),
            )
            stalled = []
            for _ in range(args.stalled):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.sendall(
                    b"POST /v1/images/edits HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Authorization: Bearer bench\r\n"
                    b"Content-Type: multipart/form-data; boundary=b\r\n"
                    b"Content-Length: 1000000\r\n\r\n--b\r\n"
                )
                stalled.append(sock)
            time.sleep(0.5)
            started = time.monotonic()
            try:
                api.models.list()
                api.images.generate(model="flux-dev", prompt="beside stalled uploads")
                print(
                    f"stall: models + generation beside {args.stalled} stalled uploads: "
                    f"{(time.monotonic() - started) * 1000:.0f} ms"
                )
            except openai.APITimeoutError:
                print(
                    f"stall: no answer within {args.timeout:.0f} s "
                    f"beside {args.stalled} stalled uploads"
                )
            for sock in stalled:
                sock.close()
            time.sleep(1.0)

            api = api.with_options(timeout=300)
            before = _rss_mib(proc.pid)
            png = b"\x89PNG\r\n\x1a\n" + os.urandom(16 * MiB - 65536)
            images = [(f"i{i}.png", io.BytesIO(png), "image/png") for i in range(4)]
            started = time.monotonic()
            result = api.images.edit(model="nano-banana-edit", image=images, prompt="e", n=10)
            took = time.monotonic() - started
            time.sleep(1.0)
            print(
                f"edit: {len(result.data)} images in {took:.1f} s; RSS master+worker "
                f"{before:.0f} -> {_rss_mib(proc.pid):.0f} MiB"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
