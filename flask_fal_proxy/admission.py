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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import flask
from werkzeug.wrappers import Response

from . import errors
from .errors import ProxyError

if TYPE_CHECKING:
    from .relay import Relay

__all__ = [
    "Call",
    "Face",
    "Observer",
    "Outbound",
    "add_observer",
    "is_cross_origin",
    "observers",
    "trust_origins",
    "trusted_origins",
]

_EXTENSION = "flask_fal_proxy"
# Where the call being admitted waits for ``Face.refused`` (in the WSGI environ).
_CALL = "flask_fal_proxy.call"


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


def _state(app: flask.Flask) -> dict[str, Any]:
    state = app.extensions.get(_EXTENSION)
    if state is None:
        state = app.extensions[_EXTENSION] = {"observers": [], "trusted_origins": set()}
    return state  # type: ignore[no-any-return]


def observers(app: flask.Flask) -> list[Observer]:
    """The observers registered on ``app``, in order (an empty list if none)."""
    state = app.extensions.get(_EXTENSION)
    return state["observers"] if state else []  # type: ignore[no-any-return]


def add_observer(app: flask.Flask, observer: Observer) -> None:
    _state(app)["observers"].append(observer)


def trust_origins(app: flask.Flask, origins: Iterable[str]) -> None:
    """Add normalised origins to the app's one list of pages trusted across origins.

    ``allow_browser_origins``, ``ProxyConfig.allowed_origins`` and the
    facade's ``cors_origins`` all land here: an origin a deployer opened to
    CORS on one face is trusted by the cross-origin rule of every face.
    """
    _state(app)["trusted_origins"].update(origins)


def trusted_origins(app: flask.Flask) -> AbstractSet[str]:
    state = app.extensions.get(_EXTENSION)
    return state["trusted_origins"] if state else frozenset()  # type: ignore[no-any-return]


# Values of Sec-Fetch-Site with which a browser says another site started the call.
FOREIGN_FETCH_SITES = frozenset({"cross-site", "same-site"})


def is_cross_origin(request: flask.Request) -> bool:
    """Whether a browser marked ``request`` as started by a page of another origin.

    The rule of Go's ``net/http.CrossOriginProtection``: ``Sec-Fetch-Site``
    decides when present (``same-origin`` and ``none``, a typed URL or a
    bookmark, are fine); without it, an ``Origin`` whose host differs from
    the request's ``Host``. A client that sends neither is not a browser (or
    one too old to be a concern), and is left to authentication and limits.
    CORS only decides what a page may read: a ``no-cors`` form or
    ``text/plain`` POST needs no preflight and would reach the provider.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.strip().lower() in FOREIGN_FETCH_SITES
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if len(request.headers.getlist("Origin")) > 1:
        return True
    if origin == "null":
        return True
    host = origin.partition("://")[2]
    return not host or host.lower() != request.host.lower()


@dataclass
class Outbound:
    """What a face will send: built by its rules, filled in step by step."""

    method: str
    url: str = ""
    endpoint: str = ""
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # What the observers may read (``Call.notes``), and what only the face's own send uses.
    notes: dict[str, Any] = field(default_factory=dict)
    extra: Any = None


class Face:
    """A face's rules; the steps and their order are :meth:`handle`'s, written once.

    Each call goes: origin (cross-site) → the face's target or path rules
    (request line and headers only) → authentication → the server's
    credential → the body → observers' ``admit`` (budgets) → send → record.
    The cheap refusals come first, so no byte of the body is read, and no
    key looked up, for a request that is refused anyway. A face overrides
    the steps it has; ``send`` relays by default.
    """

    name: str = "proxy"
    upstream: str = "fal"
    relay: Relay | None = None
    cross_origin_protection: bool = True
    # Where the upstream names its request id, for the usage record.
    request_id_headers: tuple[str, ...] = ("request-id", "x-request-id")
    # How the face words the relay's neutral "URL would be altered" refusal.
    altered_url: Callable[[str], ProxyError] = staticmethod(errors.invalid_path)

    # --- the face's rules -----------------------------------------------------
    def check_origin(self, request: flask.Request) -> None:
        if not self.cross_origin_protection or not is_cross_origin(request):
            return
        origins = request.headers.getlist("Origin")
        trusted = trusted_origins(flask.current_app)
        if len(origins) == 1 and origins[0] in trusted:
            return
        raise errors.cross_origin_refused()

    def rules(self, request: flask.Request) -> Outbound:
        return Outbound(request.method)

    def authenticate(self, request: flask.Request) -> None:
        return None

    def credential(self, request: flask.Request) -> str:
        return ""

    def read_body(self, request: flask.Request, outbound: Outbound) -> None:
        return None

    def headers(self, request: flask.Request, outbound: Outbound, credential: str) -> None:
        return None

    def send(self, call: Call, outbound: Outbound, watchers: Sequence[Observer]) -> Response:
        assert self.relay is not None
        upstream = self.relay.send(outbound.method, outbound.url, outbound.headers, outbound.body)
        if watchers:
            call.status = upstream.status_code
            headers = upstream.headers
            for name in self.request_id_headers:
                call.request_id = headers.get(name)
                if call.request_id:
                    break
            for watcher in watchers:
                watcher.response(call, outbound.method, outbound.url, call.status, headers)
        return self.relay.relay(upstream, outbound.method)

    def render(self, error: ProxyError) -> Response:
        if error.code == "url_would_be_altered":
            error = self.altered_url("it would be altered before sending")
        return error.get_response()

    # --- the path ---------------------------------------------------------------
    def handle(self, request: flask.Request) -> Response:
        watchers = observers(flask.current_app)
        call = None
        if watchers:
            # Found by refused() if a step below refuses.
            call = request.environ[_CALL] = Call(self.name, self.upstream, request.method)
        self.check_origin(request)
        outbound = self.rules(request)
        self.authenticate(request)
        credential = self.credential(request)
        self.read_body(request, outbound)
        self.headers(request, outbound, credential)
        if call is None:
            return self.send(_NO_CALL, outbound, ())
        call.endpoint, call.url, call.body = outbound.endpoint, outbound.url, outbound.body
        call.bytes_in = len(outbound.body or b"") or (request.content_length or 0)
        call.notes.update(outbound.notes)
        for watcher in watchers:
            watcher.admit(call, request)
        response = self.send(call, outbound, watchers)
        request.environ[_CALL] = None
        return _recorded(response, call, watchers)

    def refused(self, error: ProxyError, status: int) -> None:
        """Record a refusal for the observers: the safety net calls this once per refusal.

        ``status`` is the one the client got, which the face's shape may set
        apart from the error's (the facade answers ``budget_exceeded`` with 429).
        """
        app = flask.current_app
        watchers = observers(app)
        if not watchers:
            return
        request = flask.request
        call = request.environ.get(_CALL)
        request.environ[_CALL] = None
        if call is None:
            call = Call(self.name, self.upstream, request.method)
        call.status = status
        call.refusal = error.code
        _finish(call, watchers)


_NO_CALL = Call("", "", "")


def _finish(call: Call, watchers: Sequence[Observer]) -> None:
    if call.finished is not None:
        return
    call.finished = time.monotonic()
    for watcher in watchers:
        watcher.finish(call)


def _recorded(response: Response, call: Call, watchers: Sequence[Observer]) -> Response:
    if call.status is None:
        call.status = response.status_code
    if response.is_sequence:
        # Built whole already (a JSON answer): count its parts without joining them.
        call.bytes_out = sum(len(part) for part in response.response)
        _finish(call, watchers)
        return response
    response.response = _RecordedBody(response.response, call, watchers)
    return response


class _RecordedBody:
    """A relayed body that shows each chunk to the observers and finishes the call once.

    ``close`` is called by the WSGI server after the last byte or when the
    client went away, so ``finish`` sees the whole duration either way.
    """

    def __init__(
        self, inner: Iterable[bytes], call: Call, watchers: Sequence[Observer]
    ) -> None:
        self.inner = inner
        self.call = call
        self.watchers = watchers

    def __iter__(self) -> Iterator[bytes]:
        call, watchers = self.call, self.watchers
        for chunk in self.inner:
            call.bytes_out += len(chunk)
            for watcher in watchers:
                watcher.chunk(call, chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            _finish(self.call, self.watchers)


def mount_face(
    face: Face,
    prefix: str,
    rules: Sequence[tuple[str, str, Sequence[str]]],
    *,
    exact: bool = False,
    views: Mapping[str, Any] | None = None,
    url_prefix: str | None = None,
) -> flask.Blueprint:
    """The blueprint of a face: its URL rules, one safety net, face-shaped routing errors.

    ``rules`` are ``(rule, endpoint, methods)``; each endpoint's view is
    ``views[endpoint]`` or the face itself. Routing errors (404, 405, slash
    redirects) at ``prefix`` (``exact``) or below it answer in the face's shape.
    """
    blueprint = flask.Blueprint(face.name, __name__, url_prefix=url_prefix)
    errors.install_safety_net(blueprint, face.render, face.refused)
    for rule, endpoint, methods in rules:
        view = (views or {}).get(endpoint, face)
        if view is face:
            # Extensions that key on the view function (Flask-Limiter) need a
            # name that is unique per blueprint.
            view = _named_view(face, f"{face.name}.{endpoint}", endpoint)
        blueprint.add_url_rule(rule, endpoint, view, methods=list(methods))
    where = (url_prefix or "") + prefix
    errors.install_routing_errors(
        blueprint, where, face.render, face.upstream, face.refused, exact=exact
    )
    return blueprint


def _named_view(face: Face, qualname: str, name: str) -> Any:
    def view(**_: Any) -> Response:
        # Refusals are raised as ProxyError; the blueprint's safety net logs and answers them.
        # The request itself, not its context-local proxy: every step reads it many times.
        return face.handle(flask.request._get_current_object())  # type: ignore[attr-defined]

    view.__name__, view.__qualname__ = name, qualname
    return view
