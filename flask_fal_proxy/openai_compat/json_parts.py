"""JSON documents with long base64 texts in them, built without copying those texts.

An edit hands fal its images as data URIs, and a ``b64_json`` answer carries
every image: tens of megabytes of base64 in otherwise small documents. Put
into a ``str`` and serialized, each image would be held three times over (the
text, ``json.dumps``' output, its encoding), and once more per job when ``n``
is split into several jobs. Here a long text is a :class:`Base64Text` holding
the base64 as bytes, encoded once; :func:`dumps` serializes everything else
with ``json`` and returns the document as a sequence of parts in which every
job (or the answer) shares those same bytes objects. The parts are sent one
after another, never joined.

Base64 (``A-Z a-z 0-9 + / =``) needs no escaping in a JSON string, which is
what makes splicing it in as bytes sound; the prefix (``data:image/png;base64,``)
is checked against the same kind of alphabet.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

__all__ = ["Base64Text", "Parts", "dumps"]

_SAFE_PREFIX = re.compile(r"[A-Za-z0-9.+/;:=,-]*")


class Base64Text:
    """A JSON string made of an ASCII ``prefix`` and base64 ``data``, kept as bytes."""

    __slots__ = ("data", "prefix")

    def __init__(self, data: bytes, prefix: str = "") -> None:
        if not _SAFE_PREFIX.fullmatch(prefix):
            raise ValueError("the prefix must be plain ASCII without quotes or escapes")
        self.data = data
        self.prefix = prefix

    def __len__(self) -> int:
        return len(self.prefix) + len(self.data)

    def __str__(self) -> str:
        return self.prefix + self.data.decode("ascii")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return str(self) == other
        if isinstance(other, Base64Text):
            return (self.prefix, self.data) == (other.prefix, other.data)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.prefix, self.data))

    def __repr__(self) -> str:
        return f"Base64Text({self.prefix!r}, <{len(self.data)} bytes>)"


class Parts:
    """A document as byte strings to send in order; ``len`` is its total size."""

    __slots__ = ("_length", "parts")

    def __init__(self, parts: tuple[bytes, ...]) -> None:
        self.parts = parts
        self._length = sum(len(part) for part in parts)

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def join(self) -> bytes:
        """One bytes object: for tests and small documents only."""
        return b"".join(self.parts)


def dumps(value: Any) -> bytes | Parts:
    """``value`` as JSON: plain bytes, or :class:`Parts` if it holds a :class:`Base64Text`."""
    texts: dict[str, Base64Text] = {}

    def placeholder(item: Any) -> str:
        if not isinstance(item, Base64Text):
            raise TypeError(f"{type(item).__name__} is not JSON serializable")
        # A random token per text: a client's own strings cannot imitate it.
        token = secrets.token_hex(16)
        texts[token] = item
        return token

    document = json.dumps(value, separators=(",", ":"), default=placeholder)
    if not texts:
        return document.encode()
    pieces = re.split('"(' + "|".join(texts) + ')"', document)
    parts: list[bytes] = []
    for index, piece in enumerate(pieces):
        if index % 2 == 0:
            parts.append(piece.encode())
            continue
        text = texts[piece]
        parts.append(f'"{text.prefix}'.encode())
        parts.append(text.data)
        parts.append(b'"')
    return Parts(tuple(part for part in parts if part))
