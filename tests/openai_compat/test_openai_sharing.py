"""The pieces behind "pays once" and "bounded memory", without an app.

``json_parts`` must write exactly what ``json.dumps`` would while sharing the
base64 bytes between documents; ``departure`` must see a closed client on a
real socket, and never consume a byte of one that is still there.
"""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
import requests

from flask_fal_proxy.openai_compat import errors
from flask_fal_proxy.openai_compat.call_failures import answer_for, never_sent
from flask_fal_proxy.openai_compat.departure import client_left
from flask_fal_proxy.openai_compat.json_parts import Base64Text, Parts, dumps
from flask_fal_proxy.openai_compat.media import upload_data_uri
from flask_fal_proxy.testing.fal_openapi import png_image


def test_parts_are_the_json_that_json_dumps_writes_and_share_the_image_bytes() -> None:
    image = upload_data_uri(png_image() + bytes(3000), "image")
    payload = {"prompt": 'say "hi" \u00e9\u0000', "image_urls": [image, image], "n": 1}
    as_text = {**payload, "image_urls": [str(image), str(image)]}

    first, second = dumps({**payload, "num_images": 4}), dumps({**payload, "num_images": 2})

    assert isinstance(first, Parts) and isinstance(second, Parts)
    compact = json.dumps({**as_text, "num_images": 4}, separators=(",", ":"))
    assert first.join() == compact.encode()
    assert len(first) == len(first.join())
    shared = [p for p in first.parts if p is image.data]
    assert len(shared) == 2 and any(p is image.data for p in second.parts)
    assert dumps({"prompt": "p"}) == b'{"prompt":"p"}'


def test_a_client_string_that_looks_like_a_placeholder_stays_a_string() -> None:
    image = Base64Text(base64.b64encode(b"x" * 30), "data:image/png;base64,")
    tricky = {"a": '"' + "0" * 32 + '"', "b": image}
    assert json.loads(dumps(tricky).join()) == {"a": tricky["a"], "b": str(image)}


def test_a_prefix_that_would_need_escaping_is_refused() -> None:
    with pytest.raises(ValueError):
        Base64Text(b"AAAA", 'data:"x";base64,')


def test_departure_sees_a_closed_client_and_leaves_pending_bytes_alone() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
        with server_side:
            gone = client_left({"gunicorn.socket": server_side})
            assert gone is not None and gone() is False
            client.sendall(b"GET /next HTTP/1.1\r\n")
            time.sleep(0.05)
            assert gone() is False
            assert server_side.recv(100) == b"GET /next HTTP/1.1\r\n"  # nothing consumed
            client.close()
            time.sleep(0.05)
            assert gone() is True
    assert client_left({}) is None


def test_only_a_connection_never_made_counts_as_not_sent() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as refused:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    assert never_sent(refused.value)
    assert not never_sent(requests.ConnectionError("Connection aborted."))
    assert not never_sent(RuntimeError("a bug"))
    assert answer_for(requests.ReadTimeout()).code == errors.fal_timeout().code
    assert answer_for(ConnectionResetError()).code == "upstream_interrupted"
