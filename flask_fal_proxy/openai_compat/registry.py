"""Which public model ids this server offers, and the fal endpoint behind each.

The table is parsed and vetted once, when the blueprint is created: an
endpoint id becomes part of a ``queue.fal.run`` URL, so it must pass the
same path rules as a browser's target URL (no dot or empty segments, no
encoded separators, nothing that could name another host), and it must name
an app (``owner/app``) so that the queue URLs of its jobs can be checked
against it. A bad entry is a ``ValueError`` at start-up, never a surprise on
the first request.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..validation import path_problem

__all__ = ["Model", "parse_models"]

# A fixed epoch for the ``created`` field: OpenAI clients sort and display it,
# so it must not change between restarts or differ between workers.
_CREATED_BASE = 1_704_067_200  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class Model:
    id: str
    endpoint: str

    @property
    def app(self) -> str:
        """The app part of the endpoint id, the prefix of every queue URL of its jobs."""
        return "/".join(self.endpoint.split("/")[:2])

    @property
    def created(self) -> int:
        digest = hashlib.sha256(self.id.encode()).digest()
        return _CREATED_BASE + int.from_bytes(digest[:3], "big")

    def describe(self) -> dict[str, object]:
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": "fal-ai"}


def _endpoint_problem(endpoint: str) -> str | None:
    if not endpoint or endpoint.startswith("/"):
        return "it must look like owner/app[/path]"
    problem = path_problem(endpoint)
    if problem:
        return problem
    segments = endpoint.split("/")
    if len(segments) < 2:
        return "it must look like owner/app[/path]"
    if "requests" in segments[2:]:
        return "a 'requests' segment would be read as a queue request path"
    return None


def _entries(models: Mapping[str, str] | str) -> list[tuple[str, str]]:
    if isinstance(models, str):
        entries = []
        for item in models.split(","):
            if not item.strip():
                continue
            public, sep, endpoint = item.strip().partition(":")
            if not sep:
                raise ValueError(f"model entry {item.strip()!r} is not 'public-id:owner/app/path'")
            entries.append((public.strip(), endpoint.strip()))
        return entries
    return [(str(k).strip(), str(v).strip()) for k, v in models.items()]


def parse_models(models: Mapping[str, str] | str) -> dict[str, Model]:
    """``{"flux-dev": "fal-ai/flux/dev"}`` or ``"flux-dev:fal-ai/flux/dev,..."``, vetted."""
    table: dict[str, Model] = {}
    for public, endpoint in _entries(models):
        if not public or any(c.isspace() for c in public):
            raise ValueError(f"model id {public!r} must be non-empty and without spaces")
        problem = _endpoint_problem(endpoint)
        if problem:
            raise ValueError(f"model {public!r}: endpoint id {endpoint!r} is refused: {problem}")
        if public in table:
            raise ValueError(f"model id {public!r} is configured twice")
        table[public] = Model(public, endpoint)
    if not table:
        raise ValueError("no models: pass models=, or set SUPPORTED_MODELS")
    return table
