"""An offline stand-in for fal, for the example app and for your own tests.

``FakeFal`` serves fal's queue, synchronous-run, streaming and storage
shapes on 127.0.0.1, checks that every call carries the expected
``Authorization: Key ...`` and records what it received. ``LoopbackAdapter``
is a requests transport that sends ``https://<fal host>/...`` to it while
keeping the original ``Host``, so the proxy under test vets and sends the
real fal URL and only the last hop is redirected: nothing in the proxy is
mocked.

    fake = FakeFal(key="test-key").start()
    app.config["FAL_KEY"] = "test-key"
    app.register_blueprint(create_blueprint(session=fake.session()))
"""

from __future__ import annotations

import base64
import html
import json
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from werkzeug.wrappers import Request, Response

from . import fal_openapi
from .fake_server import DEFAULT_MAX_CALLS, FakeServer, RecordedCall, keep_last, keep_newest

__all__ = ["FakeFal", "RecordedCall"]

# A job keeps only the fields its answer is made from, never the images sent with it.
_ANSWER_FIELDS = (
    "prompt",
    "num_images",
    "image_size",
    "width",
    "height",
    "sync_mode",
    "enhance_prompt",
    # What the fake bills by (x-fal-billable-units), as fal does.
    "duration",
)
_MAX_KEPT_TEXT = 10_000


def _job_input(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        return {}
    kept: dict[str, Any] = {}
    for name in _ANSWER_FIELDS:
        value = payload.get(name)
        if isinstance(value, str):
            value = value[:_MAX_KEPT_TEXT]
        elif isinstance(value, dict):
            value = {k: v for k, v in value.items() if k in ("width", "height")}
        elif name not in payload or not isinstance(value, (bool, int, float, type(None))):
            continue
        kept[name] = value
    return kept


@dataclass
class _Job:
    endpoint: str
    app_id: str
    input: Any
    polls: int = 0
    cancelled: bool = False
    key: str = ""
    # "hang" never completes until cancelled; "fail" completes with an error.
    behaviour: str = ""
    logs: list[dict[str, str]] = field(default_factory=list)


def _image_for(prompt: str) -> str:
    text = html.escape(prompt[:60] or "(empty prompt)")
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="512" height="256">'
        '<rect width="100%" height="100%" fill="#1f2937"/>'
        '<text x="50%" y="50%" fill="#f9fafb" font-size="22" text-anchor="middle" '
        f'font-family="sans-serif">{text}</text></svg>'
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _result_for(endpoint: str, payload: Any) -> dict[str, Any]:
    prompt = payload.get("prompt", "") if isinstance(payload, dict) else ""
    return {
        "images": [
            {
                "url": _image_for(str(prompt)),
                "width": 512,
                "height": 256,
                "content_type": "image/svg+xml",
            }
        ],
        "prompt": prompt,
        "seed": 42,
        "endpoint": endpoint,
        "has_nsfw_concepts": [False],
    }


def _json(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json", headers=headers)


def _sse(events: Iterator[Any], delay: float) -> Iterator[bytes]:
    for event in events:
        yield f"data: {json.dumps(event)}\n\n".encode()
        time.sleep(delay)


class FakeFal(FakeServer):
    """fal on loopback: ``queue.fal.run``, ``fal.run`` and ``rest.fal.ai`` by ``Host``.

    Endpoints whose id contains ``validation-error``, and inputs whose
    ``num_images`` is outside 1..4, answer 422 with fal's ``detail`` shape;
    ``server-error`` answers 500. Queue jobs move from
    IN_QUEUE to IN_PROGRESS to COMPLETED over successive status polls.

    It also serves fal's per-endpoint OpenAPI documents (``fal.ai``) for the
    endpoints of :mod:`.fal_openapi`, and with ``media_urls=True`` answers
    those endpoints as fal does: ``num_images`` PNGs on ``v3.fal.media``
    (served here too), or data URIs under ``sync_mode``; ``inline_images=True``
    answers every image as a data URI, for offline servers whose clients
    cannot reach fal.media. ``calls`` and ``uploads`` keep the last
    ``max_calls`` of each; the last ``max_jobs`` queue jobs and served images
    are kept, each job with only the few input fields its answer needs
    (``prompt`` cut at 10,000 characters). Further accepted
    ``keys`` may be given; ``rate_limited_keys`` answer 429, any other key
    401, and a job answers only the key that submitted it. A prompt with
    ``[reject]`` is refused with a 422, ``[fail]`` makes a failed job and
    ``[hang]`` one that runs until cancelled.
    """

    thread_name = "fake-fal"

    def __init__(
        self,
        key: str = "fake-fal-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stream_delay: float = 0.05,
        keys: Iterable[str] = (),
        rate_limited_keys: Iterable[str] = (),
        media_urls: bool = False,
        inline_images: bool = False,
        document_delay: float = 0.0,
        max_calls: int = DEFAULT_MAX_CALLS,
        max_jobs: int = 1000,
    ) -> None:
        if isinstance(max_jobs, bool) or not isinstance(max_jobs, int) or max_jobs < 1:
            raise ValueError("max_jobs must be a whole number, 1 or more")
        self.max_jobs = max_jobs
        self.keys = {key, *keys}
        self.rate_limited_keys = set(rate_limited_keys)
        self.media_urls = media_urls
        self.inline_images = inline_images
        self.document_delay = document_delay
        self.media: dict[str, bytes] = {}
        self.stream_delay = stream_delay
        self.uploads: dict[str, bytes] = {}
        self._jobs: dict[str, _Job] = {}
        self.prices: dict[str, tuple[float, str]] = dict(DEFAULT_PRICES)
        self.billable_units: dict[str, float] = {}
        # The calls to the pricing API, which ``calls`` leaves out: they are the proxy's own.
        self.pricing_calls: list[RecordedCall] = []
        super().__init__(key, host=host, port=port, max_calls=max_calls)

    def records(self, request: Request) -> bool:
        # Price look-ups are kept apart, in ``pricing_calls`` (see Billing below).
        return not request.path.startswith("/__upload/") and not _is_pricing(request)

    def dispatch(self, request: Request, body: bytes) -> Response:
        host = request.host.split(":")[0]
        if request.path.startswith("/__upload/"):
            return self._upload(request, body)
        if host == "fal.ai" and request.path == "/api/openapi/queue/openapi.json":
            return self._document(request.args.get("endpoint_id", ""))
        if host == "fal.media" or host.endswith(".fal.media"):
            return self._media(request)
        authorization = request.headers.get("Authorization", "")
        key = authorization[4:] if authorization.startswith("Key ") else ""
        if key in self.rate_limited_keys:
            return _json({"detail": "Rate limit exceeded"}, 429, **{"Retry-After": "7"})
        if key not in self.keys:
            return _json({"detail": "Invalid or missing fal key"}, 401)
        payload: Any = None
        if body:
            try:
                payload = json.loads(body)
            except ValueError:
                return _json({"detail": "Body is not JSON"}, 400)
        path = request.path.strip("/")
        if host == "api.fal.ai" and path == "v1/models/pricing":
            return self._pricing(request)
        if host == "queue.fal.run":
            return self._bill(request, path, payload, self._queue(request, path, payload, key))
        if host == "fal.run":
            return self._bill(request, path, payload, self._run(request, path, payload))
        if host == "rest.fal.ai" and path.startswith("storage/upload/"):
            return self._storage(path, payload)
        return _json({"detail": f"No such fake host {host}"}, 404)

    def _upload(self, request: Request, body: bytes) -> Response:
        # The client PUTs straight to the signed URL, from the page's origin
        # in a browser, so the bucket answers CORS like fal's CDN does.
        cors = {
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "PUT",
            "Access-Control-Allow-Headers": "content-type",
        }
        if request.method == "OPTIONS":
            return Response(b"", 204, headers=cors)
        if request.method != "PUT":
            return _json({"detail": "Method not allowed"}, 405)
        with self._lock:
            if self.max_calls:
                self.uploads[request.path] = body
                keep_newest(self.uploads, self.max_calls)
        return Response(b"", 200, headers=cors)

    def _error_for(self, endpoint: str, payload: Any = None) -> Response | None:
        if "validation-error" in endpoint:
            detail = [
                {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"}
            ]
            return _json({"detail": detail}, 422)
        if "server-error" in endpoint:
            return _json({"detail": "Internal error in the model"}, 500)
        count = payload.get("num_images", 1) if isinstance(payload, dict) else 1
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 4:
            # What a model's input schema answers, so clients see a real ValidationError.
            detail = [
                {
                    "loc": ["body", "num_images"],
                    "msg": "Input should be less than or equal to 4",
                    "type": "less_than_equal",
                    "ctx": {"le": 4},
                    "input": count,
                }
            ]
            return _json({"detail": detail}, 422)
        return None

    def _run(self, request: Request, endpoint: str, payload: Any) -> Response:
        error = self._error_for(endpoint, payload)
        if error is not None:
            return error
        if endpoint.endswith("/stream"):
            prompt = payload.get("prompt", "") if isinstance(payload, dict) else ""
            final = _result_for(endpoint[: -len("/stream")], payload)
            partial = [{"partial": True, "step": i, "text": prompt[: i * 4]} for i in range(1, 4)]
            return Response(
                _sse(iter([*partial, final]), self.stream_delay), mimetype="text/event-stream"
            )
        return _json(_result_for(endpoint, payload), **{"x-fal-request-id": str(uuid.uuid4())})

    def _document(self, endpoint: str) -> Response:
        time.sleep(self.document_delay)
        document = fal_openapi.openapi_document(endpoint)
        if document is None:
            return _json({"detail": f"Endpoint {endpoint} not found"}, 404)
        return _json(document)

    def _media(self, request: Request) -> Response:
        data = self.media.get(request.path)
        if request.method != "GET" or data is None:
            return _json({"detail": "Not found"}, 404)
        return Response(data, mimetype="image/png")

    def _catalogued_error(self, endpoint: str, payload: Any) -> Response | None:
        prompt = str(payload.get("prompt", "")) if isinstance(payload, dict) else ""
        most = fal_openapi.max_images(endpoint) or 1
        count = payload.get("num_images", 1) if isinstance(payload, dict) else 1
        detail = []
        if "[reject]" in prompt:
            detail.append(
                {
                    "loc": ["body", "prompt"],
                    "msg": "contains a word this model refuses",
                    "type": "value_error",
                }
            )
            detail.append(
                {
                    "loc": ["body", "seed"],
                    "msg": "Input should be a valid integer",
                    "type": "int_parsing",
                }
            )
        if not isinstance(count, int) or not 1 <= count <= most:
            detail.append(
                {
                    "loc": ["body", "num_images"],
                    "msg": f"Input should be less than or equal to {most}",
                    "type": "less_than_equal",
                    "ctx": {"le": most},
                }
            )
        return _json({"detail": detail}, 422) if detail else None

    def _openai_result(self, endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        size = payload.get("image_size")
        width, height = 1024, 768
        if isinstance(size, dict):
            width, height = size.get("width", width), size.get("height", height)
        elif "width" in payload:
            width, height = payload["width"], payload.get("height", height)
        images = []
        png = fal_openapi.png_image()
        for _ in range(int(payload.get("num_images", 1))):
            if payload.get("sync_mode") or self.inline_images:
                url = "data:image/png;base64," + base64.b64encode(png).decode()
            else:
                path = f"/files/fake/{uuid.uuid4().hex}.png"
                with self._lock:
                    self.media[path] = png
                    keep_newest(self.media, self.max_jobs)
                url = f"https://v3.fal.media{path}"
            images.append(
                {"url": url, "width": width, "height": height, "content_type": "image/png"}
            )
        prompt = str(payload.get("prompt", ""))
        if payload.get("enhance_prompt"):
            prompt += ", richly detailed"
        return {"images": images, "seed": 42, "prompt": prompt, "has_nsfw_concepts": [False]}

    def _queue(self, request: Request, path: str, payload: Any, key: str = "") -> Response:
        parts = path.split("/")
        if "requests" in parts:
            at = parts.index("requests")
            app_id = "/".join(parts[:at])
            rest = parts[at + 1 :]
            job = self._jobs.get(rest[0]) if rest else None
            if job is None or job.app_id != app_id or (job.key and job.key != key):
                return _json({"detail": "Request not found"}, 404)
            request_id, action = rest[0], "/".join(rest[1:])
            base = f"https://queue.fal.run/{app_id}/requests/{request_id}"
            if action == "status" and request.method == "GET":
                return _json(self._status(job, base, request.args.get("logs") == "1"))
            if action == "status/stream" and request.method == "GET":
                return Response(
                    _sse(self._status_events(job, base), self.stream_delay),
                    mimetype="text/event-stream",
                )
            if action == "cancel" and request.method == "PUT":
                job.cancelled = True
                return _json({"status": "CANCELLATION_REQUESTED"}, 202)
            if action == "" and request.method == "GET":
                if (job.polls < 2 and not job.cancelled) or job.behaviour == "hang":
                    return _json({"detail": "Request is still in progress"}, 400)
                if job.behaviour == "fail":
                    return _json({"detail": "The model crashed: out of GPU memory"}, 500)
                catalogued = job.endpoint in fal_openapi.ENDPOINTS
                if catalogued and (self.media_urls or self.inline_images):
                    return _json(self._openai_result(job.endpoint, job.input))
                return _json(
                    _result_for(job.endpoint, job.input), **{"x-fal-request-id": request_id}
                )
            return _json({"detail": "Not found"}, 404)
        if request.method != "POST":
            return _json({"detail": "Method not allowed"}, 405)
        if path in fal_openapi.ENDPOINTS:
            error = self._catalogued_error(path, payload)
        else:
            error = self._error_for(path, payload)
        if error is not None:
            return error
        request_id = str(uuid.uuid4())
        app_id = "/".join(parts[:2])
        prompt = str(payload.get("prompt", "")) if isinstance(payload, dict) else ""
        behaviour = "hang" if "[hang]" in prompt else "fail" if "[fail]" in prompt else ""
        with self._lock:
            self._jobs[request_id] = _Job(
                endpoint=path,
                app_id=app_id,
                input=_job_input(payload),
                key=key,
                behaviour=behaviour,
            )
            keep_newest(self._jobs, self.max_jobs)
        base = f"https://queue.fal.run/{app_id}/requests/{request_id}"
        return _json(
            {
                "status": "IN_QUEUE",
                "request_id": request_id,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
                "queue_position": 0,
            }
        )

    def _status(self, job: _Job, base: str, logs: bool) -> dict[str, Any]:
        job.polls += 1
        if job.behaviour == "hang" and not job.cancelled:
            return {"status": "IN_PROGRESS", "response_url": base}
        if job.polls == 1 and not job.cancelled:
            return {"status": "IN_QUEUE", "queue_position": 0, "response_url": base}
        if job.polls == 2 and not job.cancelled:
            job.logs.append(
                {
                    "message": "generating",
                    "level": "INFO",
                    "source": "user",
                    "timestamp": "2026-01-01T00:00:00Z",
                }
            )
            status: dict[str, Any] = {"status": "IN_PROGRESS", "response_url": base}
        else:
            job.polls = max(job.polls, 3)
            status = {
                "status": "COMPLETED",
                "response_url": base,
                "metrics": {"inference_time": 0.1},
            }
            if job.behaviour == "fail":
                status["error"] = "The model crashed: out of GPU memory"
                status["error_type"] = "runner_error"
        if logs:
            status["logs"] = list(job.logs)
        return status

    def _status_events(self, job: _Job, base: str) -> Iterator[dict[str, Any]]:
        while True:
            status = self._status(job, base, True)
            yield status
            if status["status"] == "COMPLETED":
                return

    def _storage(self, path: str, payload: Any) -> Response:
        if path == "storage/upload/initiate":
            name = (
                payload.get("file_name", "upload.bin")
                if isinstance(payload, dict)
                else "upload.bin"
            )
            token = uuid.uuid4().hex
            return _json(
                {
                    "upload_url": f"{self.base_url}/__upload/{token}/{name}",
                    "file_url": f"https://v3.fal.media/files/fake/{token}/{name}",
                }
            )
        return _json({"detail": "Not found"}, 404)

    # --- Billing: fal's pricing API and x-fal-billable-units (usage tracking) ---
    # fal answers every inference result with the units it billed, and
    # publishes each endpoint's unit price; the fake does both, computing the
    # units from the input the way fal bills them, so budgets and spend
    # tracking run offline. ``prices`` (endpoint -> (USD per unit, unit)) and
    # ``billable_units`` (endpoint -> a fixed count to report) can be changed.

    # Seconds the pricing API takes to answer (to see concurrent first uses wait for one).
    pricing_delay = 0.0

    def set_price(self, endpoint: str, unit_price: float, unit: str = "image") -> None:
        with self._lock:
            self.prices[endpoint] = (unit_price, unit)

    def units_for(self, endpoint: str, payload: Any) -> float:
        """The units this fake bills for ``payload`` at ``endpoint``."""
        from ..usage.units import estimate_units

        fixed = self.billable_units.get(endpoint)
        if fixed is not None:
            return fixed
        _, unit = self.prices.get(endpoint, (0.0, "image"))
        return estimate_units(unit, payload)

    def _pricing(self, request: Request) -> Response:
        call = RecordedCall(
            request.method,
            "api.fal.ai",
            request.path,
            request.query_string.decode(),
            dict(request.headers),
            b"",
        )
        with self._lock:
            self.pricing_calls.append(call)
            keep_last(self.pricing_calls, self.max_calls)
        time.sleep(self.pricing_delay)
        wanted = request.args.getlist("endpoint_id")
        prices = [
            {
                "endpoint_id": e,
                "unit_price": self.prices[e][0],
                "unit": self.prices[e][1],
                "currency": "USD",
            }
            for e in wanted
            if e in self.prices
        ]
        return _json({"prices": prices, "next_cursor": None, "has_more": False})

    def _bill(self, request: Request, path: str, payload: Any, response: Response) -> Response:
        if response.status_code != 200 or request.method == "PUT":
            return response
        parts = path.split("/")
        if "requests" in parts:
            rest = parts[parts.index("requests") + 1 :]
            job = self._jobs.get(rest[0]) if len(rest) == 1 else None
            if job is not None and request.method == "GET":
                units = self.units_for(job.endpoint, job.input)
                response.headers["x-fal-billable-units"] = f"{units:g}"
                response.headers["x-fal-request-id"] = rest[0]
            return response
        if request.host.split(":")[0] == "queue.fal.run":
            # The submit: fal names the job in a header as well as the body.
            answer = json.loads(response.get_data())
            response.headers["x-fal-request-id"] = str(answer.get("request_id", ""))
            return response
        if not path.endswith("/stream"):
            units = self.units_for(path, payload)
            response.headers["x-fal-billable-units"] = f"{units:g}"
            response.headers.setdefault("x-fal-request-id", str(uuid.uuid4()))
        return response


def _is_pricing(request: Request) -> bool:
    return request.host.split(":")[0] == "api.fal.ai" and request.path == "/v1/models/pricing"


# USD per billable unit, in the shape of fal's pricing API; figures of the
# order fal charges, for offline runs, not fal's price list.
DEFAULT_PRICES: dict[str, tuple[float, str]] = {
    "fal-ai/flux/dev": (0.025, "megapixel"),
    "fal-ai/flux/schnell": (0.003, "megapixel"),
    "fal-ai/flux-pro/v1.1-ultra": (0.06, "image"),
    "fal-ai/flux-pro/kontext": (0.04, "image"),
    "fal-ai/flux-pro/v1/fill": (0.05, "megapixel"),
    "fal-ai/fast-lightning-sdxl": (0.002, "image"),
    "fal-ai/imagen4/preview": (0.04, "image"),
    "fal-ai/nano-banana/edit": (0.039, "image"),
    "fal-ai/fake-width-height": (0.01, "megapixel"),
    "fal-ai/kling-video/v2/master/text-to-video": (0.28, "second"),
}
# --- end of billing ---
