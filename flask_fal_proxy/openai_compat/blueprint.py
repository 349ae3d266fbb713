"""The OpenAI images API as a Flask blueprint, answered by fal models.

Every setting is read and checked in :func:`create_openai_blueprint`, so a
missing key or a malformed model table stops the server at start-up, not at
the first request. Each view checks in a fixed order, cheapest first:
the access key, the body's type and size, the model, then (possibly
fetching fal's schema) the fields; nothing reaches fal until all of them
have passed. Access keys are compared in constant time, each against every
configured key.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import flask
import requests

from .. import errors as core_errors
from .. import validation
from ..admission import Call, Face, Observer, Outbound, mount_face, trust_origins
from ..checks import checked_origins
from ..config import FaceLimits
from ..credentials import server_setting
from ..cross_origin import STAINLESS_HEADERS, require_flask_cors
from ..errors import ProxyError
from ..relay import default_session
from . import errors, json_parts
from .departure import client_left
from .fal_input import Plan, plan_jobs
from .jobs import Progress, QueueRunner
from .json_parts import Base64Text
from .keys import KeyPool
from .media import images_b64, upload_data_uri
from .registry import Model, parse_models
from .schemas import ModelInputs, SchemaCache, fetch_document

__all__ = ["OpenAIConfig", "create_openai_blueprint", "openai_blueprint"]

logger = logging.getLogger("flask_fal_proxy.openai_compat")

MAX_JSON_BYTES = 1024 * 1024
MAX_FORM_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_IMAGES_PER_EDIT = 16
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
# What the OpenAI JS SDK sends from a page: its key, JSON or a form, and its
# X-Stainless-* telemetry and retry headers.
CORS_ALLOW_HEADERS: tuple[str | re.Pattern[str], ...] = (
    "Authorization",
    "Content-Type",
    STAINLESS_HEADERS,
)
CORS_EXPOSE_HEADERS = ("Retry-After", "x-should-retry")


def _split(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item and item.strip()]


def fal_keys_from_env() -> list[str]:
    """The fal keys the environment names: ``AI_KEYS`` (comma-separated), else ``FAL_KEY``."""
    return _split(os.environ.get("AI_KEYS")) or _split(os.environ.get("FAL_KEY"))


@dataclass(frozen=True, kw_only=True)
class OpenAIConfig(FaceLimits):
    """The facade's settings; :meth:`from_env` fills them from the seed's variables.

    ``models`` maps public ids to fal endpoint ids (or is the string form
    ``"flux-dev:fal-ai/flux/dev,..."``); ``access_keys`` are what clients
    send as ``Authorization: Bearer``; ``fal_keys`` are used in turn, and
    when empty the keys are found as on every face (``AI_KEYS``, else
    ``FAL_KEY``, from ``app.config`` then the environment, on each call).
    ``max_request_body_bytes`` bounds an edit's form, ``max_json_body_bytes``
    a generation's JSON body.
    """

    models: Mapping[str, str] | str = ""
    access_keys: Sequence[str] = ()
    fal_keys: Sequence[str] = ()
    allow_unauthenticated: bool = False
    generation_timeout: float = 300.0
    schemas: Mapping[str, Mapping[str, Any]] | None = None
    cors_origins: Sequence[str] = ()
    url_prefix: str = ""
    max_request_body_bytes: int = MAX_FORM_BYTES
    max_json_body_bytes: int = MAX_JSON_BYTES
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    _table: dict[str, Model] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        self._table.update(parse_models(self.models))
        set_(self, "access_keys", tuple(_split(self.access_keys)))
        if not self.access_keys and not self.allow_unauthenticated:
            raise ValueError(
                "no access keys: pass access_keys= or set CUSTOM_ACCESS_KEY "
                "(or allow_unauthenticated=True to serve anyone)"
            )
        set_(self, "fal_keys", tuple(_split(self.fal_keys)))
        timeout = self.generation_timeout
        if not (isinstance(timeout, (int, float)) and 0 < timeout <= 3600):
            raise ValueError("generation_timeout must be between 0 and 3600 seconds")
        set_(self, "cors_origins", checked_origins("cors_origins", _split(self.cors_origins)))

    @classmethod
    def from_env(cls, **settings: Any) -> OpenAIConfig:
        """``settings`` over the seed's variables (SUPPORTED_MODELS, CUSTOM_ACCESS_KEY).

        fal keys left out are not read here: like every face's key, they are
        found on each call (``AI_KEYS``, else ``FAL_KEY``, app config first),
        and registering the blueprint on an app that has neither fails.
        """
        if settings.get("models") is None:
            settings["models"] = os.environ.get("SUPPORTED_MODELS", "")
        if settings.get("access_keys") is None:
            settings["access_keys"] = _split(os.environ.get("CUSTOM_ACCESS_KEY"))
        if settings.get("fal_keys") is None:
            settings["fal_keys"] = ()
        elif not _split(settings["fal_keys"]):
            raise ValueError("no fal keys: pass fal_keys=, or set AI_KEYS or FAL_KEY")
        if settings.get("cors_origins") is None:
            settings["cors_origins"] = ()
        return cls(**{k: v for k, v in settings.items() if v is not None or k == "schemas"})

    @property
    def table(self) -> dict[str, Model]:
        return self._table


class _ImagesAPI(Face):
    """The facade's face: the model table, the access keys, the schema cache and the runner."""

    upstream = "fal"

    def __init__(
        self, name: str, config: OpenAIConfig, schemas: SchemaCache, runner: QueueRunner
    ) -> None:
        self.name = name
        self.config = config
        self.models = config.table
        self.access_keys = [key.encode() for key in config.access_keys]
        self.schemas = schemas
        self.runner = runner
        self.cross_origin_protection = config.cross_origin_protection

    # --- checks, in the order the views call them ------------------------------
    def authenticate(self, request: flask.Request) -> None:
        if not self.access_keys:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        presented = token.strip().encode()
        matched = False
        for key in self.access_keys:
            matched |= hmac.compare_digest(presented, key)
        if scheme.lower() != "bearer" or not matched:
            raise errors.invalid_api_key()

    def model(self, requested: Any) -> Model:
        if requested is None or requested == "":
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise errors.invalid_request(
                "model is required: this server offers several (GET /v1/models).", "model"
            )
        if not isinstance(requested, str) or requested not in self.models:
            raise errors.model_not_found(str(requested))
        return self.models[requested]

    # --- the face's steps (Face.handle runs them in order) ---------------------
    def credential(self, request: flask.Request) -> KeyPool:
        return self.runner.keys if self.config.fal_keys else _pool_from_settings()

    def read_body(self, request: flask.Request, outbound: Outbound) -> None:
        endpoint = request.url_rule.endpoint.rpartition(".")[2] if request.url_rule else ""
        model, plan = self.edit_plan(request) if endpoint == "edits" else self.plan(request)
        outbound.endpoint = model.endpoint
        jobs = [plan.job_input(count) for count in plan.batches]
        outbound.notes["fal_inputs"] = jobs
        outbound.extra = {"model": model, "plan": plan}

    def headers(self, request: flask.Request, outbound: Outbound, credential: Any) -> None:
        outbound.extra["keys"] = credential

    def send(self, call: Call, outbound: Outbound, watchers: Sequence[Observer]) -> Any:
        extra = outbound.extra
        progress = Progress(client_left=client_left(flask.request.environ), keys=extra["keys"])
        if watchers:

            def observe(method: str, url: str, status: int, headers: Any) -> None:
                for watcher in watchers:
                    watcher.response(call, method, url, status, headers)

            progress.observe = observe
        return self.generate(extra["model"], extra["plan"], progress, outbound.notes["fal_inputs"])

    def render(self, error: ProxyError) -> flask.Response:
        if error.code == "budget_exceeded":
            error = errors.insufficient_quota(error.message)
        return errors.from_proxy_error(error).get_response()  # type: ignore[return-value]

    def plan(self, request: flask.Request) -> tuple[Model, Plan]:
        # The body: its type, then at most max_json_body_bytes of strict JSON.
        if not validation.is_json_media_type(request.headers.get("Content-Type", "")):
            raise errors.unsupported_media_type("application/json")
        body = validation.read_body(request, self.config.max_json_body_bytes)
        fields = validation.load_json(body) if body else None
        if not isinstance(fields, dict):
            raise errors.invalid_request("The request body must be a JSON object.")
        # The model, then its schema (fetched from fal on first use), then the fields.
        model = self.model(fields.get("model"))
        inputs = self.schemas.inputs(model)
        return model, plan_jobs(fields, inputs)

    def edit_plan(self, request: flask.Request) -> tuple[Model, Plan]:
        # The order of plan(); the form is parsed only once its size is known.
        if request.mimetype != "multipart/form-data":
            raise errors.unsupported_media_type("multipart/form-data")
        if request.content_length is None:
            raise errors.length_required()
        if request.content_length > self.config.max_request_body_bytes:
            raise errors.body_too_large(self.config.max_request_body_bytes)
        form = request.form
        fields = {k: v for k, v in form.items() if k not in ("image", "image[]", "mask")}
        model = self.model(fields.get("model"))
        inputs = self.schemas.inputs(model)
        if inputs.edit_field is None:
            raise errors.model_cannot_edit(model.id)
        plan = plan_jobs(fields, inputs, from_form=True)
        return model, self._with_images(plan, inputs, request)

    def _with_images(self, plan: Plan, inputs: ModelInputs, request: flask.Request) -> Plan:
        files = request.files.getlist("image") + request.files.getlist("image[]")
        if not files:
            raise errors.invalid_request("image is required: one or more image files.", "image")
        if len(files) > MAX_IMAGES_PER_EDIT or (
            inputs.edit_field == "image_url" and len(files) > 1
        ):
            most = 1 if inputs.edit_field == "image_url" else MAX_IMAGES_PER_EDIT
            raise errors.invalid_request(f"This model edits at most {most} image(s).", "image")
        fal_input = dict(plan.fal_input)
        # Encoded once, one file at a time; every job of the request shares these.
        uris = [upload_data_uri(_read_upload(f, "image"), "image") for f in files]
        fal_input[inputs.edit_field or "image_url"] = (
            uris if inputs.edit_field == "image_urls" else uris[0]
        )
        mask = request.files.get("mask")
        if mask is not None:
            if inputs.mask_field is None:
                raise errors.invalid_request("This model takes no mask.", "mask")
            fal_input[inputs.mask_field] = upload_data_uri(_read_upload(mask, "mask"), "mask")
        return dataclasses.replace(plan, fal_input=fal_input)

    def generate(
        self, model: Model, plan: Plan, progress: Progress, jobs: list[dict[str, Any]]
    ) -> flask.Response:
        try:
            results = self.runner.run_all(model.endpoint, model.app, jobs, progress)
            data = self._images(results, plan)
        except Exception as exc:
            error = _as_openai_error(exc, submitted=progress.submitted)
            if progress.submitted:
                errors.after_submit(error)
            raise error from None
        body = json_parts.dumps({"created": int(time.time()), "data": data})
        if isinstance(body, bytes):
            return flask.Response(body, mimetype="application/json")
        # The base64 images are sent as they are, never joined into one copy.
        response = flask.Response(body.parts, mimetype="application/json")
        response.headers["Content-Length"] = str(len(body))
        return response

    def _images(self, results: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
        wanted = sum(plan.batches)
        found: list[tuple[str, str | None]] = []
        for result in results:
            images = result.get("images")
            if not isinstance(images, list):
                images = [result["image"]] if isinstance(result.get("image"), dict) else []
            revised = result.get("revised_prompt") or result.get("prompt")
            if not (isinstance(revised, str) and revised and revised != plan.prompt):
                revised = None
            for image in images:
                url = image.get("url") if isinstance(image, dict) else None
                if isinstance(url, str) and len(found) < wanted:
                    found.append((url, revised))
        if not found:
            raise errors.generation_failed("fal returned no images")
        if plan.b64:
            # Side by side, within one budget for the whole answer.
            encoded = images_b64([url for url, _ in found], self.runner.relay)
            entries: list[dict[str, Any]] = [{"b64_json": Base64Text(b64)} for b64 in encoded]
        else:
            entries = [{"url": url} for url, _ in found]
        for entry, (_, revised) in zip(entries, found, strict=True):
            if revised is not None:
                entry["revised_prompt"] = revised
        return entries

    # --- views that send nothing upstream ----------------------------------------
    def list_models(self) -> flask.Response:
        self.check_origin(flask.request)
        self.authenticate(flask.request)
        return flask.jsonify(
            {"object": "list", "data": [m.describe() for m in self.models.values()]}
        )

    def retrieve_model(self, model: str) -> flask.Response:
        self.check_origin(flask.request)
        self.authenticate(flask.request)
        if model not in self.models:
            raise errors.model_not_found(model)
        return flask.jsonify(self.models[model].describe())


_pools: dict[tuple[str, ...], KeyPool] = {}


def _pool_from_settings() -> KeyPool:
    """The fal keys as every face finds a key: ``AI_KEYS``, else ``FAL_KEY``, config then env.

    The pool is kept per set of keys, so its turns and benched keys survive
    between calls and a rotated set starts afresh.
    """
    keys = tuple(_split(server_setting("AI_KEYS")) or _split(server_setting("FAL_KEY")))
    if not keys:
        raise core_errors.missing_credentials(
            "fal", "set AI_KEYS or FAL_KEY in app.config or the environment"
        )
    pool = _pools.get(keys)
    if pool is None:
        if len(_pools) > 16:
            _pools.clear()
        pool = _pools[keys] = KeyPool(keys)
    return pool


def _read_upload(upload: Any, field: str) -> bytes:
    data = upload.stream.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise errors.invalid_request(f"{field} is larger than {MAX_UPLOAD_BYTES} bytes.", field)
    return data if isinstance(data, bytes) else bytes(data)


def _as_openai_error(exc: Exception, submitted: bool = False) -> errors.OpenAIError:
    """The answer for a failed generation; after a submit, never a 500 the SDKs retry."""
    if isinstance(exc, errors.OpenAIError):
        error = exc
    elif isinstance(exc, ProxyError):
        error = errors.from_proxy_error(exc)
    else:
        logger.error(
            "unexpected %s while generating%s; answered %d",
            type(exc).__name__,
            " after a submit" if submitted else "",
            502 if submitted else 500,
        )
        return errors.generation_interrupted() if submitted else errors.internal_error()
    if submitted and error.status >= 500 and error.status not in (502, 504):
        replaced = errors.generation_interrupted()
        replaced.headers.update(error.headers)
        return replaced
    return error


def _install_cors(blueprint: flask.Blueprint, origins: Sequence[str]) -> None:
    CORS = require_flask_cors("cors_origins")
    CORS(
        blueprint,
        origins=list(origins),
        methods=["GET", "POST", "OPTIONS"],
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        supports_credentials=False,
        max_age=600,
    )
    blueprint.record_once(lambda state: trust_origins(state.app, origins))


def openai_blueprint(
    config: OpenAIConfig,
    *,
    name: str = "fal_openai",
    session: requests.Session | None = None,
) -> flask.Blueprint:
    """The blueprint of an :class:`OpenAIConfig`; register it with ``app.register_blueprint``."""
    if not config.access_keys:
        logger.warning("%s: no access key configured; anyone who can reach it can spend", name)
    outbound = session if session is not None else default_session()
    pool = KeyPool(config.fal_keys) if config.fal_keys else None
    runner = QueueRunner(
        outbound,
        pool,  # type: ignore[arg-type]
        generation_timeout=float(config.generation_timeout),
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
    )
    cache = SchemaCache(lambda endpoint: fetch_document(runner.relay, endpoint), config.schemas)
    face = _ImagesAPI(name, config, cache, runner)
    rules = [
        ("/v1/images/generations", "generations", ["POST"]),
        ("/v1/images/edits", "edits", ["POST"]),
        ("/v1/models", "models", ["GET"]),
        ("/v1/models/<path:model>", "model", ["GET"]),
        ("/health", "health", ["GET"]),
    ]
    views = {
        "models": face.list_models,
        "model": face.retrieve_model,
        "health": lambda: flask.jsonify({"status": "ok"}),
    }
    blueprint = mount_face(face, "/v1", rules, views=views, url_prefix=config.url_prefix or None)
    if not config.fal_keys:
        blueprint.record_once(_require_fal_keys)
    if config.cors_origins:
        _install_cors(blueprint, config.cors_origins)
    # Where fal's other APIs (pricing, for track_usage) are reached, as for the fal route.
    blueprint.fal_proxy_relay = runner.relay  # type: ignore[attr-defined]
    blueprint.fal_proxy_keys = config.fal_keys  # type: ignore[attr-defined]
    return blueprint


def _require_fal_keys(state: Any) -> None:
    config = state.app.config
    if not any(config.get(name) or os.environ.get(name) for name in ("AI_KEYS", "FAL_KEY")):
        raise ValueError("no fal keys: pass fal_keys=, or set AI_KEYS or FAL_KEY")


def create_openai_blueprint(
    *,
    models: Mapping[str, str] | str | None = None,
    access_keys: str | Sequence[str] | None = None,
    fal_keys: str | Sequence[str] | None = None,
    session: requests.Session | None = None,
    name: str = "fal_openai",
    url_prefix: str = "",
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
    generation_timeout: float = 300.0,
    allow_unauthenticated: bool = False,
    cors_origins: str | Sequence[str] | None = None,
) -> flask.Blueprint:
    """A blueprint serving OpenAI's images and models API with fal models.

    The arguments are :class:`OpenAIConfig`'s fields; each left ``None``
    defaults to its environment variable (``SUPPORTED_MODELS``,
    ``CUSTOM_ACCESS_KEY``, ``AI_KEYS`` or ``FAL_KEY``), as
    :meth:`OpenAIConfig.from_env` reads them. ``cors_origins`` (needs
    Flask-CORS) lets pages on those origins call the API. Raises
    ``ValueError`` for any setting that could not work.
    """
    config = OpenAIConfig.from_env(
        models=models,
        access_keys=access_keys,
        fal_keys=fal_keys,
        url_prefix=url_prefix,
        schemas=schemas,
        generation_timeout=generation_timeout,
        allow_unauthenticated=allow_unauthenticated,
        cors_origins=cors_origins,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    return openai_blueprint(config, name=name, session=session)
