"""``python -m flask_fal_proxy.openai_compat``: the facade as a service, under gunicorn.

For users who want the seed's experience (a ``.env`` and one command) with
the package's production settings: gunicorn, one process per core, sized
like ``example_app/gunicorn.conf.py``. A generation mostly waits on fal, so
the worker is gevent when it is installed (thousands of waiting calls per
process) and gthread otherwise. gevent must patch the standard library
before ``ssl`` and ``requests`` are imported, and importing this package
already imports them, so the command re-executes itself under
``python -m gevent.monkey`` first rather than patching too late.

Without fal keys the server refuses to start: a production server must
never fall back to fake images. ``--offline`` is the explicit way to try it
without a key: it serves every model of the package's fake fal, whose
images are data URIs, under the same workers. Each worker runs its own fake,
started after the fork: a fake in the master would be copied into every
gevent worker along with its greenlets, and a facade call runs its whole job
within one request, so a fake per worker loses nothing.

A setting that cannot work (no gunicorn, ``PORT=abc``) is one line on stderr
and exit status 2, never a traceback: the reader is someone trying it out.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("flask_fal_proxy.openai_compat")

_PATCHED_MARK = "FAL_OPENAI_PROXY_GEVENT"
_INSTALL = "pip install 'flask-fal-proxy[openai]'"


class _Unusable(Exception):
    """A setting or an install the server cannot start with; its message says what to do."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fal-openai-proxy",
        description="Serve OpenAI's images API with fal models (settings: .env or environment).",
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="serve the package's fake fal instead of fal (no key needed; fake images)",
    )
    parser.add_argument("--host", default=None, help="address to bind (env HOST; 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (env PORT; 8000)")
    return parser


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _gevent_usable() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("socket"))


def _reexec_under_gevent(argv: Sequence[str]) -> None:
    """Restart under ``python -m gevent.monkey`` if gevent is installed and not yet active."""
    if os.environ.get(_PATCHED_MARK) or _gevent_usable():
        return
    try:
        import gevent  # noqa: F401
    except ImportError:
        return
    os.environ[_PATCHED_MARK] = "1"
    command = [sys.executable, "-m", "gevent.monkey", "--module", __package__ or "", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def _load_dotenv() -> None:
    """Read ``./.env`` only: a file in a parent directory may belong to another project."""
    if not os.path.isfile(".env"):
        return
    try:
        from dotenv import load_dotenv
    except ImportError:
        print(
            f"fal-openai-proxy: .env found but python-dotenv is not installed ({_INSTALL}); "
            "reading the environment only",
            file=sys.stderr,
        )
        return
    load_dotenv(".env", override=False)


def _require_gunicorn() -> None:
    try:
        import gunicorn.app.base  # noqa: F401
    except ImportError as exc:
        raise _Unusable(f"gunicorn is not installed; install the server with: {_INSTALL}") from exc


def _env_int(name: str, default: int, lowest: int, highest: int = 1 << 20) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lowest - 1
    if not lowest <= value <= highest:
        raise _Unusable(
            f"{name}={raw!r} is not a whole number from {lowest} to {highest}; "
            f"set it to one or unset it (default {default})"
        )
    return value


def _settings(worker_class: str, host: str, port: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "worker_class": worker_class,
        "workers": _env_int("WEB_CONCURRENCY", multiprocessing.cpu_count(), 1, 1024),
        "threads": _env_int("GUNICORN_THREADS", 16, 1, 10_000),
        "worker_connections": 1000,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": _env_int("GUNICORN_KEEPALIVE", 5, 0, 3600),
        "accesslog": os.environ.get("GUNICORN_ACCESSLOG") or None,
        # One service, no gunicornc: and no socket shared by every instance of the user.
        "control_socket_disable": True,
    }


def _serve(factory: Callable[..., Any], settings: dict[str, Any]) -> None:
    from gunicorn.app.base import BaseApplication

    class Service(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in settings.items():
                if name in self.cfg.settings:  # control_socket_disable is gunicorn 23+
                    self.cfg.set(name, value)

        def load(self) -> Any:
            # In each worker, after the fork: a connection pool is never shared.
            return factory()

    Service().run()


def _app_factory(offline: bool, cors: str | None) -> Callable[..., Any]:
    def create(serve_fake: bool = True) -> Any:
        import flask

        from .blueprint import create_openai_blueprint

        app = flask.Flask("fal_openai_proxy")
        overrides: dict[str, Any] = {"cors_origins": cors or None}
        if offline:
            from ..testing import OPENAI_MODELS, FakeFal, loopback_session

            port = 0
            if serve_fake:
                # Nothing reads its history, so it keeps none: an edit's images are gone
                # once answered.
                fake = FakeFal(
                    key=OFFLINE_FAL_KEY, inline_images=True, stream_delay=0.0, max_calls=0
                )
                port = fake.start().port
            overrides.update(
                models=os.environ.get("SUPPORTED_MODELS") or OPENAI_MODELS,
                fal_keys=[OFFLINE_FAL_KEY],
                session=loopback_session(port),
                allow_unauthenticated=True,
            )
        app.register_blueprint(create_openai_blueprint(**overrides))
        return app

    return create


OFFLINE_FAL_KEY = "offline-fake-fal-key"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the exit status (2 for settings that cannot work)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(args_list)
    try:
        return _run(args, args_list)
    except _Unusable as exc:
        print(f"fal-openai-proxy: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, args_list: list[str]) -> int:
    _load_dotenv()
    host = args.host or os.environ.get("HOST") or "127.0.0.1"
    port = args.port if args.port is not None else _env_int("PORT", 8000, 0, 65535)
    # Every number checked before gunicorn is imported: it reads WEB_CONCURRENCY itself.
    _settings("gevent", host, port)
    _require_gunicorn()
    debug = _truthy(os.environ.get("DEBUG_MODE"))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cors = os.environ.get("CORS_ORIGINS")

    if args.offline:
        if not debug:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake's access log
    else:
        from .blueprint import fal_keys_from_env

        if not fal_keys_from_env():
            raise _Unusable(
                "no fal keys. Set AI_KEYS (comma-separated) or FAL_KEY in the environment "
                "or .env; or run with --offline to try it with fake images."
            )
    _reexec_under_gevent(args_list)
    worker_class = "gevent" if _gevent_usable() else "gthread"
    if worker_class == "gthread":
        print(
            "fal-openai-proxy: gevent is not installed, so each worker holds only "
            f"{_env_int('GUNICORN_THREADS', 16, 1, 10_000)} calls at once (gthread); "
            f"for the recommended workers: {_INSTALL}",
            file=sys.stderr,
        )

    factory = _app_factory(args.offline, cors)
    try:
        factory(False)  # every setting checked here, before any worker starts
    except ValueError as exc:
        raise _Unusable(str(exc)) from exc
    if args.offline:
        logger.warning("offline: serving the fake fal's models with fake images")
    logger.info("serving with %s workers on %s:%d", worker_class, host, port)
    _serve(factory, _settings(worker_class, host, port))
    return 0
