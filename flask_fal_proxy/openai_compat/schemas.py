"""What each model accepts, read from fal's own OpenAPI document for it.

fal publishes one document per endpoint; its queue ``POST /<endpoint id>``
names the input schema, and that schema says which size parameter the
model takes (an ``image_size`` object or preset, an ``aspect_ratio`` enum,
or ``width``/``height``), how many images one job may make, whether it can
answer inline (``sync_mode``) and whether it edits images. Reading it,
instead of keeping a table per model family, lets a newly released model
work the day it appears.

Documents are fetched once per endpoint, on first use, and kept for a day;
a failed refresh keeps serving the stale document. Concurrent first
requests share one fetch: the first caller fetches while the others wait on
an ``Event`` (no lock is held across the fetch, so this is as safe under
gevent as under threads). A model whose document cannot be had fails alone.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..relay import Relay
from . import errors
from .call_failures import TRANSPORT_ERRORS
from .registry import Model

__all__ = ["ModelInputs", "SchemaCache", "fetch_document", "read_inputs"]

logger = logging.getLogger("flask_fal_proxy.openai_compat")

OPENAPI_URL = "https://fal.ai/api/openapi/queue/openapi.json?endpoint_id="
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
DOCUMENT_TTL = 24 * 3600.0
# After a failed refresh the stale document is kept, and fal asked again after this.
RETRY_STALE_AFTER = 300.0
_MAX_REF_DEPTH = 16


class DocumentUnavailable(Exception):
    """fal's document for an endpoint could not be fetched or read."""


@dataclass(frozen=True)
class ModelInputs:
    """The facts about a model's input schema that the OpenAI mapping needs."""

    properties: frozenset[str]
    size_kind: (
        str | None
    )  # "image_size_object", "image_size_preset", "aspect_ratio", "width_height"
    presets: tuple[str, ...] = ()
    aspect_ratios: tuple[str, ...] = ()
    max_width: int | None = None
    max_height: int | None = None
    max_images: int | None = None  # None: the model has no num_images input
    output_formats: tuple[str, ...] | None = None
    sync_mode: bool = False
    edit_field: str | None = None  # "image_url" or "image_urls"
    mask_field: str | None = None


def _resolve(node: Any, document: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if depth > _MAX_REF_DEPTH or not ref.startswith("#/components/schemas/"):
            raise DocumentUnavailable(f"unsupported $ref {ref[:80]!r}")
        node = document.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1])
        depth += 1
    if not isinstance(node, dict):
        raise DocumentUnavailable("a schema is not an object")
    return node


def _variants(node: Any, document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A property's schema and every alternative under ``anyOf``/``oneOf``/``allOf``."""
    resolved = _resolve(node, document)
    found = [resolved]
    for key in ("anyOf", "oneOf", "allOf"):
        for option in resolved.get(key, ()) or ():
            found.extend(_variants(option, document))
    return found


def _limit(schema: Mapping[str, Any]) -> int | None:
    for key in ("maximum", "exclusiveMaximum"):
        value = schema.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value) - (1 if key == "exclusiveMaximum" else 0)
    return None


def _enum(variants: list[dict[str, Any]]) -> tuple[str, ...]:
    values: list[str] = []
    for variant in variants:
        values.extend(v for v in variant.get("enum", ()) or () if isinstance(v, str))
    return tuple(dict.fromkeys(values))


def input_schema(document: Mapping[str, Any], endpoint: str) -> dict[str, Any]:
    """The object schema of ``POST /<endpoint>``'s JSON body in a fal queue document."""
    try:
        post = document["paths"][f"/{endpoint}"]["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
    except (KeyError, TypeError):
        raise DocumentUnavailable(f"no POST /{endpoint} with a JSON body") from None
    return _resolve(schema, document)


def read_inputs(document: Mapping[str, Any], endpoint: str) -> ModelInputs:
    """What the mapping needs to know about ``endpoint``'s input, from its document."""
    schema = input_schema(document, endpoint)
    raw = schema.get("properties")
    if not isinstance(raw, dict):
        raise DocumentUnavailable("the input schema has no properties")
    props = {name: _variants(node, document) for name, node in raw.items()}
    facts: dict[str, Any] = {"properties": frozenset(props)}

    if "image_size" in props:
        variants = props["image_size"]
        objects = [v for v in variants if {"width", "height"} <= set(v.get("properties", {}) or {})]
        facts["presets"] = _enum(variants)
        if objects:
            facts["size_kind"] = "image_size_object"
            dims = objects[0]["properties"]
            facts["max_width"] = _limit(_resolve(dims["width"], document))
            facts["max_height"] = _limit(_resolve(dims["height"], document))
        elif facts["presets"]:
            facts["size_kind"] = "image_size_preset"
    if "size_kind" not in facts and "aspect_ratio" in props:
        ratios = tuple(r for r in _enum(props["aspect_ratio"]) if _is_ratio(r))
        if ratios:
            facts["size_kind"] = "aspect_ratio"
            facts["aspect_ratios"] = ratios
    if "size_kind" not in facts and {"width", "height"} <= set(props):
        facts["size_kind"] = "width_height"
        facts["max_width"] = min(filter(None, map(_limit, props["width"])), default=None)
        facts["max_height"] = min(filter(None, map(_limit, props["height"])), default=None)
    facts.setdefault("size_kind", None)

    if "num_images" in props:
        facts["max_images"] = max(1, min(filter(None, map(_limit, props["num_images"])), default=1))
    if "output_format" in props:
        facts["output_formats"] = _enum(props["output_format"])
    facts["sync_mode"] = "sync_mode" in props
    for field in ("image_urls", "image_url"):
        if field in props:
            facts["edit_field"] = field
            break
    if "mask_url" in props:
        facts["mask_field"] = "mask_url"
    return ModelInputs(**facts)


def _is_ratio(value: str) -> bool:
    left, sep, right = value.partition(":")
    return bool(sep) and left.isdigit() and right.isdigit() and int(left) > 0 and int(right) > 0


def fetch_document(relay: Relay, endpoint: str) -> dict[str, Any]:
    """fal's queue OpenAPI document for ``endpoint``; public, so no key is sent."""
    url = OPENAPI_URL + quote(endpoint, safe="/")
    try:
        with relay.open("GET", url, {"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise DocumentUnavailable(f"fal answered {response.status_code}")
            body = response.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
    except TRANSPORT_ERRORS as exc:
        # Refused, cut off or stalled (urllib3's own exceptions, past requests'): all one.
        raise DocumentUnavailable(f"unreachable ({type(exc).__name__})") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise DocumentUnavailable("the document is too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise DocumentUnavailable("the document is not JSON") from None
    if not isinstance(document, dict):
        raise DocumentUnavailable("the document is not a JSON object")
    return document


@dataclass
class _Entry:
    inputs: ModelInputs
    refresh_at: float  # monotonic; never for a document given at creation


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.inputs: ModelInputs | None = None


class SchemaCache:
    """Each model's inputs, fetched once and shared by every request."""

    def __init__(
        self,
        fetch: Callable[[str], Mapping[str, Any]],
        documents: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        ttl: float = DOCUMENT_TTL,
        wait: float = 60.0,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._wait = wait
        self._entries: dict[str, _Entry] = {}
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()  # held only around dict updates, never across I/O
        for endpoint, document in (documents or {}).items():
            try:
                inputs = read_inputs(document, endpoint)
            except DocumentUnavailable as exc:
                raise ValueError(f"schemas[{endpoint!r}] cannot be read: {exc}") from None
            self._entries[endpoint] = _Entry(inputs, float("inf"))

    def inputs(self, model: Model) -> ModelInputs:
        """The model's inputs; a 502 ``schema_unavailable`` if fal's document cannot be had."""
        endpoint = model.endpoint
        entry = self._entries.get(endpoint)
        now = time.monotonic()
        if entry is not None and entry.refresh_at > now:
            return entry.inputs
        with self._lock:
            flight = self._flights.get(endpoint)
            leading = flight is None
            if flight is None:
                flight = self._flights[endpoint] = _Flight()
        if leading:
            self._lead(endpoint, flight, entry)
        elif entry is None:
            flight.done.wait(self._wait)
        # A follower with a stale entry does not wait for the refresh.
        inputs = flight.inputs or (entry.inputs if entry is not None else None)
        if inputs is None:
            raise errors.schema_unavailable(model.id)
        return inputs

    def _lead(self, endpoint: str, flight: _Flight, stale: _Entry | None) -> None:
        try:
            flight.inputs = read_inputs(self._fetch(endpoint), endpoint)
            self._entries[endpoint] = _Entry(flight.inputs, time.monotonic() + self._ttl)
            logger.info("loaded the input schema of %s", endpoint)
        except DocumentUnavailable as exc:
            if stale is not None:
                stale.refresh_at = time.monotonic() + RETRY_STALE_AFTER
                logger.warning(
                    "schema of %s not refreshed (%s); keeping the old one", endpoint, exc
                )
            else:
                logger.warning("schema of %s unavailable: %s", endpoint, exc)
        finally:
            with self._lock:
                self._flights.pop(endpoint, None)
            flight.done.set()
