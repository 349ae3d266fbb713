"""Worst-case JSON bodies: what checking each costs, and what it does to a stream on the worker.

Two phases, each before (the JSON check as on main, or the file given with
``--before``) and after (this checkout):

1. Cost. Each hostile shape at each face's default cap (the fal route and
   the provider routes: 32 MiB, checked by ``check_json``; the OpenAI facade:
   1 MiB, read by ``load_json``) is checked in a fresh process, which reports
   CPU time, its peak RSS above the baseline, and the tracemalloc peak.
2. Stall. A small proxy app (the fal blueprint, the last hop on 127.0.0.1)
   runs under gunicorn with one gevent worker and the example's production
   settings. A fake upstream (bench/sse_upstream.py) sends an event every
   10 ms, streamed through the proxy, while each body is posted to the same
   worker; the figure is the largest gap between two events at the client,
   less the 10 ms tick.

Everything is bounded: a body whose check outlives ``--timeout`` seconds is
reported as such (0.1.x needed hours for some), and gunicorn kills a worker
blocked for 60 s, as in production.

    python bench/worst_bodies.py            # both phases, before and after
    python bench/worst_bodies.py --quick    # 1 MiB bodies only
    python bench/worst_bodies.py --phase cost --shape combs-512
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
RELAYED_CAP = 32 * MiB  # config.DEFAULT_MAX_REQUEST_BODY_BYTES: the fal and provider routes
FACADE_CAP = 1 * MiB  # openai_compat.blueprint.MAX_JSON_BYTES
TICK = 0.01
TARGET = "https://fal.run/fal-ai/flux/dev"
BEFORE_REF = "main"  # what "before" is, unless --before names a file


def _repeat(unit: bytes, size: int) -> bytes:
    count = max(1, (size - 2) // (len(unit) + 1))
    return b"[" + unit + (b"," + unit) * (count - 1) + b"]"


SHAPES: dict[str, Callable[[int], bytes]] = {
    # 0.1.x's depth scan backtracked over this quadratically (issue 15, case 1).
    "unclosed-escaped-string": lambda size: (
        b"[" + b"[]," * 600 + b'"' + b'\\"' * ((size - 1802) // 2)
    ),
    # 0.1.x built the value: these are the ones that took the most memory.
    "empty-objects": lambda size: _repeat(b"{}", size),
    "nested-pairs": lambda size: _repeat(b"[[]]", size),
    # At the depth limit, and one level beyond it (refused at the 513th bracket).
    "deep-512-chains": lambda size: _repeat(b"[" * 511 + b"]" * 511, size),
    "deep-513": lambda size: b"[" * 513 + b"]" * 513,
    "deep-open-brackets": lambda size: b"[" * size,
    # Deep paths with a sibling on every level, the costliest for the check.
    "combs-512": lambda size: _repeat(b"[0," * 511 + b"0" + b"]" * 511, size),
    "object-chains-512": lambda size: _repeat(b'{"a":' * 511 + b"0" + b"}" * 511, size),
    "height-5-units": lambda size: _repeat(b"[[[[[0]]]]]", size),
    "height-6-mixed-units": lambda size: _repeat(b'[{"a":[{"b":[{"c":0}]}]}]', size),
    "long-string": lambda size: b'["' + b"a" * (size - 4) + b'"]',
    "many-numbers": lambda size: _repeat(b"1", size),
    "many-strings": lambda size: _repeat(b'""', size),
    "integers-100k-digits": lambda size: _repeat(b"1" + b"0" * 99_999, size),
}
# The ones posted to the gevent worker (phase 2): the worst of each kind.
STALL_SHAPES = [
    "empty-objects",
    "nested-pairs",
    "deep-512-chains",
    "combs-512",
    "height-5-units",
    "many-numbers",
    # Last: 0.1.x held the worker until gunicorn killed it.
    "unclosed-escaped-string",
]


def _main_module(name: str) -> str | None:
    """A module of the package as on main, importable from outside it, or ``None``."""
    shown = subprocess.run(
        ["git", "show", f"{BEFORE_REF}:flask_fal_proxy/{name}.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if shown.returncode != 0:
        return None
    # Imported from this checkout's package, except the JSON check's own
    # module, which is main's too; a helper that moved between modules (the
    # JSON check needs none of them) is looked up in either.
    source = shown.stdout.replace("from . import errors", "from flask_fal_proxy import errors")
    source = source.replace("\nfrom .strict_json ", "\nfrom worst_bodies_old_strict_json ")
    return re.sub(
        r"^from \.(\w+) import (.+)$",
        r"try:\n    from flask_fal_proxy.\1 import \2\nexcept ImportError:\n    pass",
        source,
        flags=re.M,
    )


def old_validation(path: str | None) -> Path:
    """The validation module as on main, saved where a child process can import it."""
    if path:
        return Path(path)
    folder = Path(tempfile.gettempdir()) / "worst_bodies_before"
    folder.mkdir(exist_ok=True)
    strict_json = _main_module("strict_json")
    if strict_json is not None:
        (folder / "worst_bodies_old_strict_json.py").write_text(strict_json)
    source = _main_module("validation")
    if source is None:
        raise SystemExit(f"no flask_fal_proxy/validation.py on {BEFORE_REF}")
    saved = folder / "worst_bodies_old_validation.py"
    saved.write_text(source)
    return saved


def load_validation(path: str) -> object:
    """This checkout's validation module, or the one at ``path`` (with its neighbours)."""
    if not path:
        from flask_fal_proxy import validation

        return validation
    import importlib.util

    sys.path.insert(0, str(Path(path).parent))
    spec = importlib.util.spec_from_file_location("old_validation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# --- phase 1: cost, one child process per body ---------------------------------


def _child(validation_path: str, shape: str, size: int, reader: str) -> None:
    """Run in the child: check one body and print what it cost, as JSON."""
    import tracemalloc

    from flask_fal_proxy.errors import ProxyError

    validation = load_validation(validation_path)
    check = getattr(validation, reader)
    body = SHAPES[shape](size)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    try:
        check(body)
        verdict = "accepted"
    except ProxyError as exc:
        verdict = f"{exc.code}: {exc.message.split(': ', 1)[-1][:60]}"
    seconds = time.process_time() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
    cost = {"bytes": len(body), "seconds": seconds, "rss_kib": rss, "verdict": verdict}
    print(json.dumps(cost), flush=True)
    if seconds > 5:
        return  # tracing every allocation of a long check would take minutes
    tracemalloc.start()
    try:
        check(body)
    except ProxyError:
        pass
    print(json.dumps({"peak": tracemalloc.get_traced_memory()[1]}), flush=True)
    tracemalloc.stop()


def measure_cost(validation_path: str, shape: str, size: int, reader: str, timeout: float) -> str:
    path = validation_path or "-"
    command = [sys.executable, __file__, "--child", path, shape, str(size), reader]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        output, note = done.stdout, "" if done.returncode == 0 else done.stderr
    except subprocess.TimeoutExpired as stopped:
        out = stopped.stdout or b""
        output, note = out.decode() if isinstance(out, bytes) else out, ""
        if not output.strip():
            return f"over {timeout:.0f} s (stopped)"
    lines = [json.loads(line) for line in output.strip().splitlines() if line.startswith("{")]
    if not lines:
        return f"failed: {note.strip().splitlines()[-1][:80] if note.strip() else '?'}"
    r = lines[0]
    peak = f"{lines[1]['peak'] / MiB:8.2f} MiB" if len(lines) > 1 else "(not measured in time)"
    per_mib = r["seconds"] * 1000 / (r["bytes"] / MiB)
    return (
        f"{r['seconds'] * 1000:9.1f} ms ({per_mib:6.1f} ms/MiB)"
        f"  RSS +{r['rss_kib'] / 1024:7.1f} MiB"
        f"  tracemalloc {peak}  {r['verdict']}"
    )


def phase_cost(versions: dict[str, str], sizes: list[tuple[str, int, str]], shapes, timeout):
    print("\n== Phase 1: the check alone, one process per body (CPU time, memory) ==")
    for face, size, reader in sizes:
        print(f"\n-- {face}: {size / MiB:g} MiB bodies ({reader}) --")
        for shape in shapes:
            for version, path in versions.items():
                result = measure_cost(path, shape, size, reader, timeout)
                print(f"{shape:24s} {version:6s} {result}", flush=True)


# --- phase 2: the stall on a gevent worker ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_app():  # gunicorn's entry point: worst_bodies:create_app()
    import flask

    from flask_fal_proxy import blueprint as blueprint_module
    from flask_fal_proxy import create_blueprint
    from flask_fal_proxy.relay import default_session
    from flask_fal_proxy.testing import LoopbackAdapter

    path = os.environ.get("WORST_BODIES_VALIDATION", "")
    validation = load_validation(path)
    if path:
        blueprint_module.read_json_body = validation.read_json_body
    session = default_session()
    session.mount("https://", LoopbackAdapter(int(os.environ["WORST_BODIES_UPSTREAM"])))
    app = flask.Flask("worst-bodies")
    app.config["FAL_KEY"] = "bench-key"
    app.register_blueprint(create_blueprint(session=session, allowed_endpoints=["**"]))

    @app.post("/facade-json")
    def facade_json() -> tuple[str, int]:
        # What the OpenAI facade does with a JSON body before anything else:
        # read at most its cap, then load_json (check, then parse).
        from flask_fal_proxy.errors import ProxyError

        try:
            validation.load_json(validation.read_body(flask.request, FACADE_CAP))
        except ProxyError as exc:
            return exc.code, exc.status
        return "", 204

    return app


class Worker:
    """The proxy under gunicorn, one gevent worker, the example's production settings."""

    def __init__(self, upstream_port: int, validation_path: str) -> None:
        env = {
            **os.environ,
            "BIND": "127.0.0.1:0",
            "WEB_CONCURRENCY": "1",
            "GUNICORN_CALLS_PER_WORKER": "64",
            "GUNICORN_WORKER_CLASS": "gevent",
            "WORST_BODIES_UPSTREAM": str(upstream_port),
            "WORST_BODIES_VALIDATION": validation_path,
            "PYTHONPATH": f"{ROOT / 'bench'}{os.pathsep}{ROOT}",
        }
        gunicorn = Path(sys.executable).with_name("gunicorn")
        self.process = subprocess.Popen(
            [
                str(gunicorn),
                "-c",
                str(ROOT / "example_app" / "gunicorn.conf.py"),
                "--no-control-socket",
                "worst_bodies:create_app()",
            ],
            env=env,
            cwd=ROOT / "bench",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        deadline = time.monotonic() + 30
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found[1])
                break
        if not self.port:
            self.stop()
            raise RuntimeError("gunicorn did not start")
        # Keep reading gunicorn's log so that it never blocks on a full pipe.
        self.log: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        time.sleep(1.0)  # the worker boots after the arbiter listens

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def _workers(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        # A worker stuck in a check (0.1.x's quadratic scan) ignores SIGTERM
        # and would outlive its arbiter: it is killed by its id.
        workers = self._workers()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for pid in workers:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def _stream(port: int, arrivals: list[float], stop: threading.Event, ready: threading.Event):
    target = f"https://fal.run/bench/stream?n=100000&interval={TICK}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", "/api/fal/proxy", headers={"x-fal-target-url": target})
        response = connection.getresponse()
        ready.set()
        buffer = b""
        while not stop.is_set():
            chunk = response.read1(65536)
            if not chunk:
                break
            now = time.monotonic()
            buffer += chunk
            while b"\n\n" in buffer:
                _, buffer = buffer.split(b"\n\n", 1)
                arrivals.append(now)
    except OSError:
        pass
    finally:
        ready.set()
        connection.close()


def _post(port: int, path: str, body: bytes, timeout: float) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"x-fal-target-url": TARGET, "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        # A body that passes is relayed, and the fake answers with a stream:
        # the status is all that matters here.
        return str(response.status)
    except TimeoutError:
        return "no answer (timeout)"
    except OSError as exc:
        return f"{type(exc).__name__}"
    finally:
        connection.close()


def stall(port: int, path: str, body: bytes, timeout: float) -> tuple[float, str, float]:
    """(largest gap between events beyond the tick, the POST's status, its seconds)."""
    arrivals: list[float] = []
    stop, ready = threading.Event(), threading.Event()
    reader = threading.Thread(target=_stream, args=(port, arrivals, stop, ready), daemon=True)
    reader.start()
    ready.wait(10)
    time.sleep(0.3)
    started = time.monotonic()
    status = _post(port, path, body, timeout)
    took = time.monotonic() - started
    time.sleep(0.3)
    stop.set()
    reader.join(5)
    window = [t for t in arrivals if t >= started - 0.05]
    gaps = [b - a for a, b in zip(window, window[1:], strict=False)]
    if not window or arrivals[-1] < started + took:
        return float("inf"), status, took  # the stream died with the worker
    return max(gaps, default=0.0) - TICK, status, took


def phase_stall(versions: dict[str, str], sizes, shapes, timeout):
    print("\n== Phase 2: one gevent worker, an SSE stream ticking every 10 ms, each body posted ==")
    upstream_port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "sse_upstream.py"), str(upstream_port)]
    )
    try:
        time.sleep(0.5)
        for version, path in versions.items():
            worker = Worker(upstream_port, path)
            try:
                for face, size, reader in sizes:
                    path = "/facade-json" if reader == "load_json" else "/api/fal/proxy"
                    for shape in shapes:
                        body = SHAPES[shape](size)
                        gap, status, took = stall(worker.port, path, body, timeout)
                        gap_text = "stream lost" if gap == float("inf") else f"{gap * 1000:8.1f} ms"
                        print(
                            f"{face:28s} {shape:24s} {version:6s} largest extra gap {gap_text}"
                            f"  (POST {status} after {took:.2f} s)",
                            flush=True,
                        )
                        if worker.process.poll() is not None or gap == float("inf"):
                            worker.stop()
                            worker = Worker(upstream_port, path)
            finally:
                worker.stop()
    finally:
        upstream.terminate()
        upstream.wait(10)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["cost", "stall", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="1 MiB bodies for every face")
    parser.add_argument("--shape", action="append", help="only these shapes (repeatable)")
    parser.add_argument("--before", help="the validation.py to compare with (default: main's)")
    parser.add_argument("--no-before", action="store_true", help="this checkout only")
    parser.add_argument("--no-after", action="store_true", help="the code before only")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per body")
    args = parser.parse_args(argv)

    versions = {} if args.no_after else {"after": ""}
    if not args.no_before:
        versions = {"before": str(old_validation(args.before)), **versions}
    relayed = 1 * MiB if args.quick else RELAYED_CAP
    sizes = [
        ("fal and provider routes", relayed, "check_json"),
        ("OpenAI facade", FACADE_CAP, "load_json"),
    ]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if args.phase in ("cost", "both"):
        phase_cost(versions, sizes, args.shape or list(SHAPES), args.timeout)
    if args.phase in ("stall", "both"):
        stall_sizes = [(f"{face} ({size / MiB:g} MiB)", size, r) for face, size, r in sizes]
        phase_stall(versions, stall_sizes, args.shape or STALL_SHAPES, args.timeout)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        path = "" if sys.argv[2] == "-" else sys.argv[2]
        _child(path, sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main(sys.argv[1:])
