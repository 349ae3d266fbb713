"""The one path every face's call takes, and the seam cross-cutting rules plug into.

A call through any face passes the same steps in the same order: origin
(cross-site) → authentication → the face's own target or path rules → body →
server credential → observers' ``admit`` (budgets) → relay → record. A face
supplies only its rules; what every face must do (refuse foreign pages,
count, cap spend) is written once here or in an :class:`Observer`, never once
per face.

Observers are registered per application (``add_observer``), not per face:
``track_usage(app)`` meters every proxy blueprint on ``app`` without any face
knowing about it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import flask

__all__ = ["Call", "Observer", "add_observer", "observers"]

_EXTENSION = "flask_fal_proxy"


@dataclass
class Call:
    """One client request through a face, as the cross-cutting rules see it.

    ``face`` is the blueprint's name (``fal_proxy``, ``fal_openai``,
    ``anthropic_proxy``…), ``upstream`` the provider (``fal``,
    ``anthropic``…). ``endpoint`` is what the call reaches, for labels and
    prices: a fal endpoint id (``fal-ai/flux/dev``) or a provider path
    (``v1/messages``). ``url`` and ``body`` are the vetted outbound request
    (one of several for the facade's jobs), there for estimates; they are
    never logged. The outcome fields are filled in by the core as the call
    goes on; ``notes`` is scratch space for observers (a reservation id).
    """

    face: str
    upstream: str
    method: str
    endpoint: str = ""
    url: str | None = None
    body: bytes | None = None
    user: str | None = None
    started: float = field(default_factory=time.monotonic)
    # The outcome.
    status: int | None = None
    refusal: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    request_id: str | None = None
    units: float | None = None
    finished: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started


class Observer(Protocol):
    """What ``track_usage`` (or any other cross-cutting rule) hooks into.

    ``admit`` runs after every check of the face and before anything is
    sent, and may refuse by raising a ``ProxyError`` (``budget_exceeded``).
    ``response`` sees each upstream answer's request line, status and
    headers as they arrive (several for the facade's queue jobs, from
    several threads); ``chunk`` sees each piece
    of a relayed body as it passes (never buffered); ``finish`` runs once,
    after the last byte, after a refusal, or when the client went away.
    """

    def admit(self, call: Call, request: flask.Request) -> None: ...

    def response(
        self, call: Call, method: str, url: str, status: int, headers: Mapping[str, str]
    ) -> None: ...

    def chunk(self, call: Call, data: bytes) -> None: ...

    def finish(self, call: Call) -> None: ...


def observers(app: flask.Flask) -> list[Observer]:
    """The observers registered on ``app``, in order (an empty list if none)."""
    state = app.extensions.get(_EXTENSION)
    return state["observers"] if state else []


def add_observer(app: flask.Flask, observer: Observer) -> None:
    app.extensions.setdefault(_EXTENSION, {"observers": []})["observers"].append(observer)
