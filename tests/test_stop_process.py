"""The one process-stopping helper that bench/ and the suites share.

What matters is who receives the signal: a server started in a session of
its own takes everything it forked down with it (a gunicorn or Node cluster
must not leave workers behind), and a server started in the caller's group
is the only process signalled, since the caller's group holds the test run
itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from flask_fal_proxy.testing.processes import stop_process

# A parent that forks a child, prints the child's PID, and both sleep.
FORKS = (
    "import os, subprocess, sys, time;"
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    "print(c.pid, flush=True); time.sleep(60)"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def gone_soon(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_a_process_in_its_own_session_is_stopped_with_what_it_forked():
    proc = subprocess.Popen([sys.executable, "-c", FORKS], stdout=subprocess.PIPE,
                            start_new_session=True)
    child = int(proc.stdout.readline())
    stop_process(proc)
    assert proc.returncode == -15
    assert gone_soon(child)
    proc.stdout.close()


def test_a_process_in_the_callers_group_is_the_only_one_signalled():
    proc = subprocess.Popen([sys.executable, "-c", FORKS], stdout=subprocess.PIPE)
    child = int(proc.stdout.readline())
    try:
        stop_process(proc)
        assert proc.returncode == -15
        assert alive(child)
    finally:
        os.kill(child, 9)
        proc.stdout.close()


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout():
    proc = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print(flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    proc.stdout.readline()
    stop_process(proc, timeout=0.5)
    assert proc.returncode == -9
    proc.stdout.close()


def test_a_process_that_already_exited_is_left_alone():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stop_process(proc)
    assert proc.returncode == 0
