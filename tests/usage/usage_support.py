"""Drive a call through an app's observers the way the admission core does.

Until every face runs the seam, these tests play the core's part: create the
``Call``, run ``admit`` in a request context, send the real request to the
fake over its loopback session, then ``response``, each ``chunk`` and
``finish``, in that order. The fake and the HTTP are real; only the face's
own checks are skipped.
"""

from __future__ import annotations

import json
import time
from typing import Any

import flask
import requests

from flask_fal_proxy.admission import Call, observers
from flask_fal_proxy.errors import ProxyError

KEY = "usage-test-key-5ecret"


def drive(
    app: flask.Flask,
    session: requests.Session,
    method: str,
    url: str,
    payload: Any = None,
    *,
    user: str | None = None,
    face: str = "fal_proxy",
    upstream: str = "fal",
    endpoint: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[Call, ProxyError | None, bytes]:
    body = json.dumps(payload).encode() if payload is not None else None
    path = url.split("/", 3)[3]
    call = Call(face, upstream, method, endpoint=endpoint or path, url=url, body=body)
    call.bytes_in = len(body or b"")
    watching = observers(app)
    client_headers = {"x-user": user} if user else {}
    with app.test_request_context("/proxy", method=method, headers=client_headers):
        try:
            for observer in watching:
                observer.admit(call, flask.request)
        except ProxyError as error:
            call.status, call.refusal = error.status, error.code
            call.finished = time.monotonic()
            for observer in watching:
                observer.finish(call)
            return call, error, b""
    sent = {"authorization": f"Key {KEY}", "content-type": "application/json"}
    sent.update(headers or {})
    answer = session.request(method, url, data=body, headers=sent, stream=True)
    call.status = answer.status_code
    call.request_id = answer.headers.get("x-fal-request-id") or answer.headers.get("request-id")
    for observer in watching:
        observer.response(call, method, url, answer.status_code, answer.headers)
    received = b""
    for piece in answer.raw.stream(7, decode_content=False):
        call.bytes_out += len(piece)
        received += piece
        for observer in watching:
            observer.chunk(call, piece)
    call.finished = time.monotonic()
    for observer in watching:
        observer.finish(call)
    return call, None, received
