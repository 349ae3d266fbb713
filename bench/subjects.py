"""The subjects: every way of answering the browser that the bench knows how to run.

A subject is a proxy under test (ours under each gunicorn worker class,
with or without usage tracking; Node's ``@fal-ai/server-proxy``), or fal
itself answering directly, the floor. Each gunicorn variant differs from the
recommended configuration in one respect only, so a figure that moves says
what that respect costs. A subject that cannot run here (a module not yet
written, a server not installed) is named with the reason instead of
failing the run.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from processes import BENCH, ROOT, VENV_BIN, Started, free_port, process_tree, start
from upstream import FAL_KEY

PROXY_ROUTE = "/api/fal/proxy"
ALL_SUBJECTS = (
    "upstream,node,node-cluster,gevent,gevent-usage-memory,gevent-usage-redis,"
    "gthread,gthread-accesslog,gthread-2x-workers,sync"
)


class Unavailable(Exception):
    """This subject cannot run on this machine or checkout; the message says why."""


@dataclass
class Companion:
    """A server a subject needs beside it (redis for shared usage), started first."""

    name: str
    argv: list[str]
    port: int
    started: Started | None = None


@dataclass
class Subject:
    """One way of answering the browser: a proxy under test, or fal itself."""

    name: str
    port: int
    path: str
    auth: str | None
    argv: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    started: Started | None = None
    cwd: Path = ROOT
    companions: list[Companion] = field(default_factory=list)
    compared_with: str | None = None  # the subject this one adds a single feature to

    def headers(self, target: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.auth:
            headers["Authorization"] = self.auth
        if self.path == PROXY_ROUTE:
            headers["x-fal-target-url"] = target
        return headers

    def url_path(self, target: str) -> str:
        return self.path if self.path == PROXY_ROUTE else target.split("fal.run", 1)[1]

    def start(self, workdir: Path) -> None:
        """Its companions, then the proxy; nothing to start for fal answering directly."""
        if not self.argv:
            return
        try:
            for c in self.companions:
                c.started = start(c.name, c.argv, c.port, workdir, {})
            self.started = start(self.name, self.argv, self.port, workdir, self.env, self.cwd)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.started:
            self.started.stop()
        for c in reversed(self.companions):
            if c.started:
                c.started.stop()

    def pids(self) -> list[int]:
        return process_tree(self.started.proc.pid) if self.started else []

    def companion_pids(self) -> list[int]:
        return [pid for c in self.companions if c.started
                for pid in process_tree(c.started.proc.pid)]

    def workers(self) -> list[int]:
        if not self.started:
            return []
        tree = self.pids()
        return tree[1:] or tree


def gunicorn_subject(name: str, port: int, upstream_port: int, args: list[str],
                     threads: int | None, config: Path | None = None,
                     extra_env: dict[str, str] | None = None,
                     checkout: Path = ROOT) -> Subject:
    """``bench/proxy_app.py`` of ``checkout`` under gunicorn, importing that checkout's package.

    gunicorn puts its working directory first on ``sys.path``, so running it
    in ``checkout`` (and naming it in ``PYTHONPATH`` for the config file) is
    what makes another checkout's code the one measured.
    """
    argv = [str(VENV_BIN / "gunicorn")]
    if config is not None:
        argv += ["-c", str(config)]
    argv += [*args, "--bind", f"127.0.0.1:{port}", "--pythonpath", str(checkout / "bench"),
             "proxy_app:app"]
    env = {"BENCH_UPSTREAM_PORT": str(upstream_port), "BENCH_FAL_KEY": FAL_KEY,
           **(extra_env or {})}
    if checkout != ROOT:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout),
                                                          os.environ.get("PYTHONPATH")]))
    return Subject(name, port, PROXY_ROUTE, None, argv, env, threads, cwd=checkout)


def node_subject(name: str, port: int, upstream_port: int, workers: int) -> Subject:
    node_dir = BENCH / "node"
    argv = ["node", "--require", str(node_dir / "loopback-fetch.js"), str(node_dir / "server.js")]
    env = {
        "PORT": str(port),
        "FAL_KEY": FAL_KEY,
        "BENCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}",
        "BENCH_NODE_WORKERS": str(workers),
        "NODE_ENV": "production",
    }
    return Subject(name, port, PROXY_ROUTE, None, argv, env, None)


def recommended(up: int, checkout: Path = ROOT, name: str | None = None) -> Subject:
    """Ours as shipped: gevent, ``example_app/gunicorn.conf.py``, one process per core."""
    cores = os.cpu_count() or 1
    return gunicorn_subject(
        name or f"flask-fal-proxy gevent x{cores} (recommended)", free_port(), up, [], None,
        checkout / "example_app" / "gunicorn.conf.py", {"GUNICORN_WORKER_CLASS": "gevent"},
        checkout,
    )


def redis_companion() -> Companion:
    """A throwaway redis-server on a free port, nothing saved to disk."""
    server = shutil.which("redis-server")
    if not server:
        raise Unavailable("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    return Companion("redis-server", [server, "--bind", "127.0.0.1", "--port", str(port),
                                      "--save", "", "--appendonly", "no"], port)


def usage_subject(up: int, storage: str, baseline: str) -> Subject:
    """The recommended setup with ``track_usage`` on ``storage`` ("memory" or "redis").

    ``bench/proxy_app.py`` applies it when ``BENCH_USAGE_STORAGE`` names a
    storage URI, with a total budget that the run never reaches and fixed
    prices, so every call is estimated, reserved and settled and nothing
    asks fal's pricing API.
    """
    try:
        importlib.import_module("flask_fal_proxy.usage")
    except ImportError as exc:
        raise Unavailable(f"flask_fal_proxy.usage cannot be imported ({exc})") from None
    companions = []
    uri = "memory://"
    if storage == "redis":
        companions.append(redis_companion())
        uri = f"redis://127.0.0.1:{companions[0].port}"
    subject = recommended(up, name=f"{baseline.removesuffix(' (recommended)')} "
                                   f"+ track_usage ({storage})")
    subject.env["BENCH_USAGE_STORAGE"] = uri
    subject.companions = companions
    subject.compared_with = baseline
    return subject


def subject_catalogue(up: int) -> dict[str, Callable[[], Subject]]:
    """Every subject the harness knows, in report order, answering from port ``up``.

    A factory raises ``Unavailable`` for a subject this machine cannot run.
    """
    cores = os.cpu_count() or 1
    conf = ROOT / "example_app" / "gunicorn.conf.py"
    threads = 16
    gthread = {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_CALLS_PER_WORKER": str(threads)}
    ours = f"flask-fal-proxy gevent x{cores} (recommended)"
    catalogue = {
        "upstream": lambda: Subject("upstream alone (nginx)", up, "/", f"Key {FAL_KEY}"),
        "node": lambda: node_subject("node @fal-ai/server-proxy", free_port(), up, 1),
        "node-cluster": lambda: node_subject(
            f"node @fal-ai/server-proxy, cluster x{cores}", free_port(), up, cores
        ),
        "gthread": lambda: gunicorn_subject(
            f"flask-fal-proxy gthread {cores}x{threads} (GUNICORN_WORKER_CLASS=gthread)",
            free_port(), up, [], cores * threads, conf, gthread,
        ),
        "gthread-accesslog": lambda: gunicorn_subject(
            f"flask-fal-proxy gthread {cores}x{threads} + access log", free_port(), up,
            ["--access-logfile", "-"], cores * threads, conf, gthread,
        ),
        "gthread-2x-workers": lambda: gunicorn_subject(
            f"flask-fal-proxy gthread {2 * cores}x{threads // 2}", free_port(), up,
            ["-w", str(2 * cores), "--threads", str(threads // 2)], cores * threads, conf,
            gthread,
        ),
        "sync": lambda: gunicorn_subject(
            f"flask-fal-proxy sync x{cores}", free_port(), up, ["-w", str(cores)], cores,
        ),
        "gevent": lambda: recommended(up, name=ours),
        "gevent-usage-memory": lambda: usage_subject(up, "memory", ours),
        "gevent-usage-redis": lambda: usage_subject(up, "redis", ours),
        "gevent-pywsgi": lambda: gunicorn_subject(
            f"flask-fal-proxy gevent_pywsgi x{cores} (gevent's own HTTP server)", free_port(),
            up, [], None, conf,
            {"GUNICORN_WORKER_CLASS": "gevent_pywsgi", "GUNICORN_CALLS_PER_WORKER": "5000"},
        ),
    }
    return catalogue


def choose(catalogue: dict[str, Callable[[], Subject]], which: set[str],
           what: str = "subjects") -> tuple[dict[str, Subject], list[str]]:
    """The subjects named in ``which``, in catalogue order, and a note for each that cannot run."""
    unknown = which - set(catalogue)
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(sorted(unknown))}")
    chosen, skipped = {}, []
    for key, make in catalogue.items():
        if key in which:
            try:
                chosen[key] = make()
            except Unavailable as exc:
                skipped.append(f"{key}: {exc}")
    return chosen, skipped
