"""CPU cost of one proxied call inside the WSGI app, without a server around it.

The end-to-end figures of ``harness.py`` move with everything else on the
machine; this loop calls the real app (the blueprint, requests, the relay)
against the same nginx upstream from one thread, so a change to the proxy's
own code shows up as microseconds per call. ``--profile`` prints where they go.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from processes import free_port  # noqa: E402
from subjects import PROXY_ROUTE  # noqa: E402
from upstream import FAL_KEY, MIB, PROBE_BODY, TARGET, Upstream  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=1, help="report the fastest of N loops")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="fal-proxy-micro-"))
    workdir.chmod(0o755)
    upstream = Upstream(workdir, free_port(), free_port())
    try:
        upstream.start(MIB)
        os.environ["BENCH_UPSTREAM_PORT"] = str(upstream.port)
        os.environ["BENCH_FAL_KEY"] = FAL_KEY
        import logging

        logging.disable(logging.WARNING)
        import proxy_app

        app = proxy_app.create_app()
        environ = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": PROXY_ROUTE,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(PROBE_BODY)),
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_ACCEPT": "application/json",
            "HTTP_USER_AGENT": "wrk",
            "HTTP_X_FAL_TARGET_URL": TARGET,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        status: list[str] = []

        def start_response(s: str, headers: list, exc_info: object = None) -> None:
            status.append(s)

        def call() -> None:
            env = dict(environ)
            env["wsgi.input"] = io.BytesIO(PROBE_BODY)
            body = app(env, start_response)
            try:
                for _ in body:
                    pass
            finally:
                getattr(body, "close", lambda: None)()

        call()
        if not status or not status[-1].startswith("200"):
            raise SystemExit(f"the proxy does not forward: {status}")
        for _ in range(200):
            call()
        profiler = cProfile.Profile() if args.profile else None
        deadline = time.monotonic() + args.max_seconds
        loops = []
        for _ in range(args.repeat):
            done = 0
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            if profiler:
                profiler.enable()
            while done < args.requests and time.monotonic() < deadline:
                call()
                done += 1
            if profiler:
                profiler.disable()
            if done:
                loops.append(((time.process_time() - cpu0) * 1e6 / done,
                              (time.perf_counter() - wall0) * 1e6 / done, done))
        cpu, wall, done = min(loops)
        bad = [s for s in status if not s.startswith("200")]
        print(f"{done} calls x {len(loops)}: {cpu:.0f} us CPU and {wall:.0f} us wall per call "
              f"(fastest loop) in this process; {len(bad)} not 200")
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(25)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
