"""The processes a benchmark starts, and what /proc says about them.

Every server the bench runs (the fake fal, each proxy, redis) is started in
a session of its own, so it can be stopped with everything it forked by its
own PID, and is waited for on its port before anything is timed. CPU time
and memory are read from /proc for the whole process tree, since gunicorn
and Node's cluster do the work in children.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from flask_fal_proxy.testing.processes import stop_process

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        stop_process(self.proc)


def start(name: str, argv: list[str], port: int, workdir: Path, env: dict[str, str],
          cwd: Path = ROOT) -> Started:
    """``argv`` in its own session, logging to ``workdir``, once it listens on ``port``."""
    log = workdir / f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
        )
    started = Started(name, proc, port, log)
    try:
        wait_for_port(port, proc)
    except Exception:
        started.stop()
        raise RuntimeError(f"{name} did not start; see {log}:\n{log.read_text()[-2000:]}") from None
    return started


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    for child in children_of(pid):
        tree.extend(process_tree(child))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / tick


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def busy_processes() -> list[str]:
    """Other CPU-heavy programs now running, which would distort the figures."""
    mine = set(process_tree(os.getpid())) | {os.getppid()}
    names = re.compile(r"pytest|wrk|chrom|node|gunicorn|nginx|py-spy|hypothesis")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and names.search(cmd):
            found.append(f"{entry}: {cmd[:100]}")
    return found
