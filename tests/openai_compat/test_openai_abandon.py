"""A client that leaves stops paying: its jobs are cancelled, under gunicorn with gevent.

The facade runs in real gunicorn with the recommended configuration
(example_app/gunicorn.conf.py, gevent workers); fal is the package's
``FakeFal`` in this process, where a ``[hang]`` prompt makes a job that runs
until it is cancelled. The client is a raw socket that sends a generation
and closes after a second, as ``curl -m 1`` would. Before, the job ran until
``generation_timeout`` (two minutes here) and held a graceful shutdown for
gunicorn's whole ``graceful_timeout``.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from faults.faultkit import Gunicorn

from flask_fal_proxy.testing import FakeFal
from openai_compat.openai_support import ACCESS_KEY, FAL_KEY, submits

HERE = Path(__file__).resolve().parent


@pytest.fixture
def fal() -> Iterator[FakeFal]:
    with FakeFal(key=FAL_KEY, media_urls=True, stream_delay=0.0) as fake:
        yield fake


@pytest.fixture
def server(fal: FakeFal, tmp_path: Path) -> Iterator[Gunicorn]:
    served = Gunicorn(
        "facade_app:create_app()",
        {
            "FACADE_FAL_PORT": str(fal.port),
            "FACADE_FAL_KEY": FAL_KEY,
            "FACADE_ACCESS_KEY": ACCESS_KEY,
        },
        tmp_path / "gunicorn.log",
        calls=8,
        extra_args=("--pythonpath", str(HERE)),
    )
    yield served
    served.stop()


def leave_after(port: int, body: dict, seconds: float, fal: FakeFal, jobs: int = 1) -> float:
    """Send a generation, close the connection ``seconds`` later (once fal has its jobs)."""
    data = json.dumps(body).encode()
    head = (
        "POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ACCESS_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as client:
        sent = time.monotonic()
        client.sendall(head + data)
        # A loaded machine may take a while to start the worker; fal must have the jobs.
        assert wait_for(lambda: len(submits(fal)) == jobs, 20) is not None, "no jobs at fal"
        time.sleep(max(0.0, sent + seconds - time.monotonic()))
    return time.monotonic()


def cancels(fal: FakeFal) -> list:
    return [c for c in fal.calls if c.method == "PUT" and c.path.endswith("/cancel")]


def wait_for(predicate, limit: float) -> float | None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.02)
    return None


def test_jobs_of_a_client_that_left_are_cancelled_within_two_seconds(
    fal: FakeFal, server: Gunicorn
) -> None:
    # n=8 on a model that makes at most 4 per job: two jobs, both cancelled.
    body = {"model": "flux-dev", "prompt": "[hang] a lighthouse", "n": 8}
    closed = leave_after(server.port, body, 1.0, fal, jobs=2)

    both = wait_for(lambda: len(cancels(fal)) == 2, 10)

    assert both is not None, server.text()
    print(f"cancelled {both - closed:.2f} s after the client left")
    assert both - closed < 2.5
    # The answer nobody reads is logged once the cancels are done.
    assert wait_for(lambda: "client_disconnected" in server.text(), 5) is not None


def test_a_client_that_stays_gets_its_images(fal: FakeFal, server: Gunicorn) -> None:
    session = requests.Session()  # keep-alive: the same connection twice
    for _ in range(2):
        answer = session.post(
            f"http://127.0.0.1:{server.port}/v1/images/generations",
            json={"model": "flux-dev", "prompt": "a lighthouse"},
            headers={"Authorization": f"Bearer {ACCESS_KEY}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    assert cancels(fal) == []


def test_a_graceful_shutdown_does_not_wait_for_an_abandoned_job(
    fal: FakeFal, server: Gunicorn
) -> None:
    leave_after(server.port, {"model": "flux-dev", "prompt": "[hang] a lighthouse"}, 1.0, fal)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=60)

    took = time.monotonic() - started
    print(f"gunicorn stopped {took:.2f} s after SIGTERM")
    assert took < 10, server.text()  # graceful_timeout is 30 s
    assert len(cancels(fal)) == 1
