"""Whether the client of a generation has gone, so that its jobs stop costing.

A generation waits on fal for up to ``generation_timeout``. A client that
gives up (a closed tab, ``curl -m 3``, an SDK's own timeout) would leave its
jobs running, and billed, until then, and would hold up a graceful shutdown
as long. WSGI has no way to tell an app that its client left, but gunicorn
hands the client's socket over as ``environ["gunicorn.socket"]`` (Werkzeug's
server as ``werkzeug.socket``). Once the request body has been read, a
socket that reads end-of-file means the client closed its side.

The check peeks (``MSG_PEEK | MSG_DONTWAIT``): it never waits and never
consumes a byte, so a request the client pipelined after this one is left
for the server. It goes through a bare ``_socket.socket`` on the same
descriptor, detached afterwards, because gevent's socket object would wait
cooperatively on ``EAGAIN`` instead of answering at once, and because
changing the descriptor's blocking mode would change it for the server too.

Under a server that hands over no socket there is no signal, and jobs run
until they finish or until ``generation_timeout``. A client that half-closes
its side after sending (rare for HTTP clients) reads as gone.
"""

from __future__ import annotations

import _socket
import socket
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["client_left"]

_SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")
_PEEK = getattr(socket, "MSG_PEEK", 0) | getattr(socket, "MSG_DONTWAIT", 0)


def client_left(environ: Mapping[str, Any]) -> Callable[[], bool] | None:
    """A check that says whether the request's client has closed its connection.

    ``None`` when the server gives no socket, or the platform cannot peek
    without blocking.
    """
    if not hasattr(socket, "MSG_DONTWAIT"):
        return None
    sock = next((environ[key] for key in _SOCKET_KEYS if key in environ), None)
    fileno = getattr(sock, "fileno", None)
    if fileno is None:
        return None

    def gone() -> bool:
        try:
            fd = fileno()
            probe = _socket.socket(fileno=fd)
        except (OSError, ValueError):
            # Closed under us (fd -1), or not a socket: no signal either way.
            return False
        try:
            return probe.recv(1, _PEEK) == b""
        except ConnectionError:
            return True  # reset by the client
        except OSError:
            return False  # nothing to read yet (EAGAIN), or nothing to tell
        finally:
            probe.detach()

    return gone
