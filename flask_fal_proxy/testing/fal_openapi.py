"""fal's per-endpoint OpenAPI documents, for the fake and for offline servers.

fal publishes a queue document per endpoint at
``https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=<id>``: the
queue paths of the endpoint, with the input and output schemas under
``components.schemas``. These are shaped the same way, for one model of
each kind the OpenAI facade translates a ``size`` for:

- ``fal-ai/flux/dev``: ``image_size`` as an ``{width, height}`` object or a preset;
- ``fal-ai/fast-lightning-sdxl``: ``image_size`` presets only, no ``sync_mode``;
- ``fal-ai/imagen4/preview`` and ``fal-ai/flux-pro/v1.1-ultra``: an ``aspect_ratio`` enum;
- ``fal-ai/fake-width-height``: integer ``width`` and ``height`` (the shape
  of older diffusion endpoints; the id is this fake's own);
- ``fal-ai/flux-pro/kontext`` (``image_url``), ``fal-ai/nano-banana/edit``
  (``image_urls``) and ``fal-ai/flux-pro/v1/fill`` (``image_url`` and
  ``mask_url``): editing models.

Only the parts of the real documents that describe inputs are reproduced;
descriptions are this package's own.
"""

from __future__ import annotations

import copy
import struct
import zlib
from typing import Any

__all__ = ["OPENAI_MODELS", "ENDPOINTS", "openapi_document", "png_image", "max_images"]

PRESETS = [
    "square_hd",
    "square",
    "portrait_4_3",
    "portrait_16_9",
    "landscape_4_3",
    "landscape_16_9",
]

_IMAGE_SIZE = {
    "title": "ImageSize",
    "type": "object",
    "properties": {
        "width": {
            "title": "Width",
            "type": "integer",
            "description": "The width of the generated image.",
            "exclusiveMinimum": 0,
            "maximum": 14142,
            "default": 512,
        },
        "height": {
            "title": "Height",
            "type": "integer",
            "description": "The height of the generated image.",
            "exclusiveMinimum": 0,
            "maximum": 14142,
            "default": 512,
        },
    },
    "x-fal-order-properties": ["width", "height"],
}
_IMAGE = {
    "title": "Image",
    "type": "object",
    "properties": {
        "url": {"title": "Url", "type": "string"},
        "width": {"title": "Width", "type": "integer"},
        "height": {"title": "Height", "type": "integer"},
        "content_type": {"title": "Content Type", "type": "string", "default": "image/jpeg"},
    },
    "required": ["url"],
}


def _prompt() -> dict[str, Any]:
    return {"title": "Prompt", "type": "string", "description": "The prompt to generate from."}


def _num_images(maximum: int) -> dict[str, Any]:
    return {
        "title": "Num Images",
        "type": "integer",
        "description": "The number of images to generate.",
        "minimum": 1,
        "maximum": maximum,
        "default": 1,
    }


def _enum(title: str, values: list[str], default: str) -> dict[str, Any]:
    return {"title": title, "type": "string", "enum": values, "default": default}


def _flag(title: str) -> dict[str, Any]:
    return {"title": title, "type": "boolean", "default": False}


_SEED = {"title": "Seed", "type": "integer", "description": "The same seed, the same image."}
_FORMAT = _enum("Output Format", ["jpeg", "png"], "jpeg")
_SIZE_OR_PRESET = {
    "title": "Image Size",
    "anyOf": [{"$ref": "#/components/schemas/ImageSize"}, _enum("", PRESETS, "landscape_4_3")],
    "default": "landscape_4_3",
}
_ULTRA_RATIOS = ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]
_KONTEXT_RATIOS = ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]

# endpoint id -> (input schema name, properties, required)
_INPUTS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "fal-ai/flux/dev": (
        "FluxDevTextToImageInput",
        {
            "prompt": _prompt(),
            "image_size": _SIZE_OR_PRESET,
            "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 28},
            "seed": _SEED,
            "guidance_scale": {"type": "number", "minimum": 1, "maximum": 20, "default": 3.5},
            "sync_mode": _flag("Sync Mode"),
            "num_images": _num_images(4),
            "enable_safety_checker": {"type": "boolean", "default": True},
            "output_format": _FORMAT,
        },
        ["prompt"],
    ),
    "fal-ai/fast-lightning-sdxl": (
        "FastLightningSDXLInput",
        {
            "prompt": _prompt(),
            "image_size": {**_enum("Image Size", PRESETS, "square_hd")},
            "num_inference_steps": _enum("Num Inference Steps", ["1", "2", "4", "8"], "4"),
            "seed": _SEED,
            "num_images": _num_images(2),
            "format": _enum("Format", ["jpeg", "png"], "jpeg"),
        },
        ["prompt"],
    ),
    "fal-ai/imagen4/preview": (
        "Imagen4TextToImageInput",
        {
            "prompt": _prompt(),
            "negative_prompt": {"title": "Negative Prompt", "type": "string", "default": ""},
            "aspect_ratio": _enum("Aspect Ratio", ["1:1", "16:9", "9:16", "3:4", "4:3"], "1:1"),
            "num_images": _num_images(4),
            "seed": _SEED,
            "resolution": _enum("Resolution", ["1K", "2K"], "1K"),
        },
        ["prompt"],
    ),
    "fal-ai/flux-pro/v1.1-ultra": (
        "FluxProUltraTextToImageInput",
        {
            "prompt": _prompt(),
            "seed": _SEED,
            "sync_mode": _flag("Sync Mode"),
            "num_images": _num_images(4),
            "enable_safety_checker": {"type": "boolean", "default": True},
            "output_format": _FORMAT,
            "safety_tolerance": _enum("Safety Tolerance", ["1", "2", "3", "4", "5", "6"], "2"),
            "enhance_prompt": _flag("Enhance Prompt"),
            "aspect_ratio": {
                "title": "Aspect Ratio",
                "anyOf": [_enum("", _ULTRA_RATIOS, "16:9"), {"type": "string"}],
                "default": "16:9",
            },
            "raw": _flag("Raw"),
        },
        ["prompt"],
    ),
    "fal-ai/fake-width-height": (
        "WidthHeightInput",
        {
            "prompt": _prompt(),
            "width": {"title": "Width", "type": "integer", "minimum": 64, "maximum": 2048},
            "height": {"title": "Height", "type": "integer", "minimum": 64, "maximum": 2048},
            "seed": _SEED,
        },
        ["prompt"],
    ),
    "fal-ai/flux-pro/kontext": (
        "FluxKontextInput",
        {
            "prompt": _prompt(),
            "image_url": {"title": "Image URL", "type": "string"},
            "seed": _SEED,
            "guidance_scale": {"type": "number", "minimum": 1, "maximum": 20, "default": 3.5},
            "sync_mode": _flag("Sync Mode"),
            "num_images": _num_images(4),
            "output_format": _FORMAT,
            "aspect_ratio": _enum("Aspect Ratio", _KONTEXT_RATIOS, "1:1"),
        },
        ["prompt", "image_url"],
    ),
    "fal-ai/nano-banana/edit": (
        "NanoBananaImageToImageInput",
        {
            "prompt": _prompt(),
            "image_urls": {"title": "Image URLs", "type": "array", "items": {"type": "string"}},
            "num_images": _num_images(4),
            "output_format": _enum("Output Format", ["jpeg", "png", "webp"], "png"),
            "sync_mode": _flag("Sync Mode"),
        },
        ["prompt", "image_urls"],
    ),
    "fal-ai/flux-pro/v1/fill": (
        "FluxProFillInput",
        {
            "prompt": _prompt(),
            "image_url": {"title": "Image URL", "type": "string"},
            "mask_url": {"title": "Mask URL", "type": "string"},
            "seed": _SEED,
            "num_images": _num_images(4),
            "output_format": _FORMAT,
        },
        ["prompt", "image_url", "mask_url"],
    ),
}

ENDPOINTS = tuple(_INPUTS)
# Public ids an offline server offers, one per kind above.
OPENAI_MODELS = {
    "flux-dev": "fal-ai/flux/dev",
    "sdxl-lightning": "fal-ai/fast-lightning-sdxl",
    "imagen4": "fal-ai/imagen4/preview",
    "flux-ultra": "fal-ai/flux-pro/v1.1-ultra",
    "width-height": "fal-ai/fake-width-height",
    "kontext": "fal-ai/flux-pro/kontext",
    "nano-banana-edit": "fal-ai/nano-banana/edit",
    "flux-fill": "fal-ai/flux-pro/v1/fill",
}


def max_images(endpoint: str) -> int | None:
    """The ``num_images`` maximum of a catalogued endpoint (1 without the input)."""
    entry = _INPUTS.get(endpoint)
    if entry is None:
        return None
    prop = entry[1].get("num_images")
    return int(prop["maximum"]) if prop else 1


def _queue_status() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "QueueStatus",
        "properties": {
            "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
            "request_id": {"type": "string", "description": "The request id."},
            "response_url": {"type": "string", "description": "The response url."},
            "status_url": {"type": "string", "description": "The status url."},
            "cancel_url": {"type": "string", "description": "The cancel url."},
            "logs": {"type": "object", "additionalProperties": True},
            "metrics": {"type": "object", "additionalProperties": True},
            "queue_position": {"type": "integer"},
        },
        "required": ["status", "request_id"],
    }


def openapi_document(endpoint: str) -> dict[str, Any] | None:
    """The queue OpenAPI document fal serves for ``endpoint``, or ``None`` if not catalogued."""
    entry = _INPUTS.get(endpoint)
    if entry is None:
        return None
    input_name, properties, required = entry
    output_name = input_name.replace("Input", "Output")
    request_id = {
        "name": "request_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "description": "Request ID"},
    }
    status_ref = {"$ref": "#/components/schemas/QueueStatus"}

    def answer(ref: dict[str, Any], description: str) -> dict[str, Any]:
        return {
            "200": {
                "description": description,
                "content": {"application/json": {"schema": ref}},
            }
        }

    return {
        "openapi": "3.0.4",
        "info": {
            "title": "Queue OpenAPI for " + endpoint,
            "version": "1.0.0",
            "description": "The OpenAPI schema for the " + endpoint + " queue.",
            "x-fal-metadata": {"endpointId": endpoint, "category": "text-to-image"},
        },
        "components": {
            "securitySchemes": {
                "apiKeyAuth": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": 'Fal Key, as "Key <key>"',
                }
            },
            "schemas": {
                "QueueStatus": _queue_status(),
                input_name: {
                    "title": input_name,
                    "type": "object",
                    "properties": copy.deepcopy(properties),
                    "x-fal-order-properties": list(properties),
                    "required": list(required),
                },
                output_name: {
                    "title": output_name,
                    "type": "object",
                    "properties": {
                        "images": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Image"},
                        },
                        "seed": {"type": "integer"},
                        "prompt": {"type": "string"},
                        "has_nsfw_concepts": {"type": "array", "items": {"type": "boolean"}},
                    },
                    "required": ["images"],
                },
                "ImageSize": copy.deepcopy(_IMAGE_SIZE),
                "Image": copy.deepcopy(_IMAGE),
            },
        },
        "paths": {
            f"/{endpoint}/requests/{{request_id}}/status": {
                "get": {
                    "parameters": [
                        request_id,
                        {
                            "name": "logs",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "number", "description": "1 to include logs"},
                        },
                    ],
                    "responses": answer(status_ref, "The request status."),
                }
            },
            f"/{endpoint}/requests/{{request_id}}/cancel": {
                "put": {
                    "parameters": [request_id],
                    "responses": {
                        "200": {
                            "description": "The request was cancelled.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {"success": {"type": "boolean"}},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            f"/{endpoint}": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": f"#/components/schemas/{input_name}"}
                            }
                        },
                    },
                    "responses": answer(status_ref, "The request status."),
                }
            },
            f"/{endpoint}/requests/{{request_id}}": {
                "get": {
                    "parameters": [request_id],
                    "responses": answer(
                        {"$ref": f"#/components/schemas/{output_name}"}, "Result of the request."
                    ),
                }
            },
        },
        "servers": [{"url": "https://queue.fal.run"}],
        "security": [{"apiKeyAuth": []}],
    }


def png_image(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (99, 102, 241)) -> bytes:
    """A small solid-colour PNG, so a "downloaded image" is a real one."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )
