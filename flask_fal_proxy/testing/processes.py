"""Stopping a server that a test or a benchmark started: one way, for every harness.

SIGTERM comes first, so the server shuts down as in production (gunicorn
drains its workers, Node closes its listener); it is killed only if it hangs.
It is signalled by its own PID, never by name, since other servers on the
machine may be someone else's. A process started in a session of its own
(``start_new_session=True``) leads a group that holds only what it started,
so that whole group is signalled and no worker outlives its master.
"""

from __future__ import annotations

import os
import signal
import subprocess

__all__ = ["stop_process"]


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop ``proc`` (and its group, if it leads one) within ``timeout`` seconds, then kill."""
    if proc.poll() is not None:
        return
    try:
        group = os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return
    _send(proc, signal.SIGTERM, group)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _send(proc, signal.SIGKILL, group)
        proc.wait(timeout=5)


def _send(proc: subprocess.Popen, signum: int, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
    except ProcessLookupError:
        pass
