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
from typing import Any

import flask
import requests

from .. import validation
from ..errors import ProxyError, install_safety_net
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

__all__ = ["create_openai_blueprint"]

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
    re.compile(r"x-stainless-[a-z0-9-]+", re.IGNORECASE),
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


class _ImagesAPI:
    """The views, sharing the model table, the access keys, the schema cache and the runner."""

    def __init__(
        self,
        models: dict[str, Model],
        access_keys: list[str],
        schemas: SchemaCache,
        runner: QueueRunner,
    ) -> None:
        self.models = models
        self.access_keys = [key.encode() for key in access_keys]
        self.schemas = schemas
        self.runner = runner

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

    # --- views ----------------------------------------------------------------
    def generations(self) -> flask.Response:
        request = flask.request
        # 1. The access key: nothing of a stranger's request is read.
        self.authenticate(request)
        # 2. The body: its type, then at most MAX_JSON_BYTES of strict JSON.
        if not validation.is_json_media_type(request.headers.get("Content-Type", "")):
            raise errors.unsupported_media_type("application/json")
        body = validation.read_body(request, MAX_JSON_BYTES)
        fields = validation.load_json(body) if body else None
        if not isinstance(fields, dict):
            raise errors.invalid_request("The request body must be a JSON object.")
        # 3. The model, then its schema (fetched from fal on first use).
        model = self.model(fields.get("model"))
        inputs = self.schemas.inputs(model)
        # 4. The fields against that schema; only then does anything reach fal's queue.
        return self.generate(model, plan_jobs(fields, inputs))

    def edits(self) -> flask.Response:
        request = flask.request
        # The order of generations(); the form is parsed only once its size is known.
        self.authenticate(request)
        if request.mimetype != "multipart/form-data":
            raise errors.unsupported_media_type("multipart/form-data")
        if request.content_length is None:
            raise errors.length_required()
        if request.content_length > MAX_FORM_BYTES:
            raise errors.body_too_large(MAX_FORM_BYTES)
        form = request.form
        fields = {k: v for k, v in form.items() if k not in ("image", "image[]", "mask")}
        model = self.model(fields.get("model"))
        inputs = self.schemas.inputs(model)
        if inputs.edit_field is None:
            raise errors.model_cannot_edit(model.id)
        plan = plan_jobs(fields, inputs, from_form=True)
        return self.generate(model, self._with_images(plan, inputs, request))

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

    def generate(self, model: Model, plan: Plan) -> flask.Response:
        progress = Progress(client_left=client_left(flask.request.environ))
        try:
            jobs = [plan.job_input(count) for count in plan.batches]
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

    def list_models(self) -> flask.Response:
        self.authenticate(flask.request)
        return flask.jsonify(
            {"object": "list", "data": [m.describe() for m in self.models.values()]}
        )

    def retrieve_model(self, model: str) -> flask.Response:
        self.authenticate(flask.request)
        if model not in self.models:
            raise errors.model_not_found(model)
        return flask.jsonify(self.models[model].describe())


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


def _refused(error: errors.OpenAIError) -> flask.Response:
    request = flask.request
    logger.warning(
        "refused %s %s: %s (%d)",
        request.method,
        request.path,
        error.code or error.type,
        error.status,
    )
    return error.to_response()  # type: ignore[return-value]


def _install_cors(blueprint: flask.Blueprint, origins: list[str]) -> None:
    try:
        from flask_cors import CORS
    except ImportError:
        raise ValueError(
            "cors_origins needs Flask-CORS: pip install 'flask-fal-proxy[cors]'"
        ) from None
    CORS(
        blueprint,
        origins=origins,
        methods=["GET", "POST", "OPTIONS"],
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        supports_credentials=False,
        max_age=600,
    )


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

    ``models`` maps public ids to fal endpoint ids (or is the string form
    ``"flux-dev:fal-ai/flux/dev,..."``); ``access_keys`` are what clients
    send as ``Authorization: Bearer``; ``fal_keys`` are used in turn. Each
    defaults to its environment variable (``SUPPORTED_MODELS``,
    ``CUSTOM_ACCESS_KEY``, ``AI_KEYS`` or ``FAL_KEY``). ``cors_origins``
    (needs Flask-CORS) lets pages on those origins call the API. Raises
    ``ValueError`` for any setting that could not work.
    """
    table = parse_models(models if models is not None else os.environ.get("SUPPORTED_MODELS", ""))
    clients = _split(
        access_keys if access_keys is not None else os.environ.get("CUSTOM_ACCESS_KEY")
    )
    if not clients and not allow_unauthenticated:
        raise ValueError(
            "no access keys: pass access_keys= or set CUSTOM_ACCESS_KEY "
            "(or allow_unauthenticated=True to serve anyone)"
        )
    if not clients:
        logger.warning("%s: no access key configured; anyone who can reach it can spend", name)
    pool = KeyPool(_split(fal_keys) if fal_keys is not None else fal_keys_from_env())
    if not (isinstance(generation_timeout, (int, float)) and 0 < generation_timeout <= 3600):
        raise ValueError("generation_timeout must be between 0 and 3600 seconds")
    outbound = session if session is not None else default_session()
    runner = QueueRunner(
        outbound,
        pool,
        generation_timeout=float(generation_timeout),
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    cache = SchemaCache(lambda endpoint: fetch_document(runner.relay, endpoint), schemas)
    facade = _ImagesAPI(table, clients, cache, runner)

    blueprint = flask.Blueprint(name, __name__, url_prefix=url_prefix or None)
    blueprint.add_url_rule(
        "/v1/images/generations", "generations", facade.generations, methods=["POST"]
    )
    blueprint.add_url_rule("/v1/images/edits", "edits", facade.edits, methods=["POST"])
    blueprint.add_url_rule("/v1/models", "models", facade.list_models, methods=["GET"])
    blueprint.add_url_rule(
        "/v1/models/<path:model>", "model", facade.retrieve_model, methods=["GET"]
    )
    blueprint.add_url_rule("/health", "health", lambda: flask.jsonify({"status": "ok"}))
    blueprint.register_error_handler(errors.OpenAIError, _refused)
    # The safety net logs what it catches; it only needs OpenAI's shape here.
    install_safety_net(blueprint, respond=lambda e: errors.from_proxy_error(e).to_response())
    origins = _split(cors_origins)
    if origins:
        _install_cors(blueprint, origins)
    return blueprint
