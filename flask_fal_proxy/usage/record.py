"""One log line per call, for spend logs and audits.

The line is a JSON object on the ``flask_fal_proxy.usage`` logger at INFO,
so any log pipeline can ship and parse it. It says who called what, how it
ended and what it cost; it never holds a key, a header or a body (the
endpoint and user are cut to a bounded length, because clients choose them).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..admission import Call

__all__ = ["write_record"]

logger = logging.getLogger("flask_fal_proxy.usage")

_FIELD_LIMIT = 200


def write_record(call: Call) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    notes = call.notes
    record = {
        "face": call.face,
        "upstream": call.upstream,
        "user": call.user[:_FIELD_LIMIT] if call.user is not None else None,
        "method": call.method,
        "endpoint": call.endpoint[:_FIELD_LIMIT],
        "status": call.status,
        "refusal": call.refusal,
        "duration_ms": round(call.duration * 1000, 1),
        "bytes_in": call.bytes_in,
        "bytes_out": call.bytes_out,
        "cost_usd": round(float(notes.get("cost_usd", 0.0)), 6),
        "estimated": bool(notes.get("estimated", False)),
        "units": call.units,
        "request_id": call.request_id[:_FIELD_LIMIT] if call.request_id else None,
    }
    tokens = notes.get("tokens")
    if tokens:
        record["tokens"] = tokens
    logger.info(json.dumps(record, separators=(",", ":")))
